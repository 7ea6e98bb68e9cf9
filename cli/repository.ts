/**
 * `--repo` and `--password-file` as the commands take them, and opening the
 * repository they name (config/repository.ts decides which). A repository
 * error is a plain failure (exit 1) with the library's message, which names
 * the repository without credentials.
 */
import { Option, type Command } from 'commander';
import { readSettings } from '../config/env.js';
import { resolveRepositorySpec, type RepositorySpec } from '../config/repository.js';
import type { Repository } from '../engine/repository/index.js';
import { printJson, printJsonError } from './output/json.js';
import { EXIT } from './shared.js';

export interface RepoFlags {
  repo?: string;
  passwordFile?: string;
}

export const REPO_HELP =
  'the restic repository: a local path, sftp:, s3:, rest:, … or an alias NAME (OHBACKUP_REPOSITORY_NAME); default $OHBACKUP_REPOSITORY, else the state folder\'s ("state")';

/** Adds `--repo` and `--password-file` to a command. */
export function repoOptions(cmd: Command, repoHelp = REPO_HELP): Command {
  return cmd
    .addOption(new Option('--repo <repo>', repoHelp))
    .addOption(
      new Option(
        '--password-file <file>',
        "a file holding the repository's password (default: RESTIC_PASSWORD_FILE, RESTIC_PASSWORD_COMMAND or RESTIC_PASSWORD; the state repository's own)",
      ),
    );
}

export function repositorySpec(flags: RepoFlags): RepositorySpec {
  return resolveRepositorySpec(flags.repo, { stateDir: readSettings().stateDir, passwordFile: flags.passwordFile });
}

export function openRepository(flags: RepoFlags): Promise<Repository> {
  const spec = repositorySpec(flags);
  // Loaded here, not with the module: `backup --out` takes the flags too, and needs none of the repository code.
  return import('../client/runs/repositoryRuns.js').then(({ openRepositorySpec }) => openRepositorySpec(spec));
}

/**
 * The skeleton of a repository command (snapshots, check, forget, diff,
 * repo init): its result as text, or under --json the summary line of
 * `jsonKind` (output/json.ts), on stdout, and its exit code; a failure as one
 * message on stderr (under --json an error line on stdout), exit 1.
 */
export async function repoAction<R>(
  how: {
    json?: boolean;
    jsonKind: string;
    failure: string;
    toJson: (r: R) => Record<string, unknown>;
    format: (r: R) => string;
    exitCode?: (r: R) => number;
  },
  body: () => Promise<R>,
): Promise<void> {
  let result: R;
  try {
    result = await body();
  } catch (err) {
    const message = `${how.failure}: ${(err as Error)?.message ?? err}`;
    if (how.json) printJsonError({ code: 'ohbackup.failed', message }, EXIT.failed);
    else console.error(message);
    process.exitCode = EXIT.failed;
    return;
  }
  if (how.json) printJson(how.jsonKind, how.toJson(result));
  else console.log(how.format(result));
  process.exitCode = how.exitCode?.(result) ?? EXIT.ok;
}
