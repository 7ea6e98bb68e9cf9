/** `ohbackup repo init`: a new restic repository for ohbackup's snapshots. */
import type { Command } from 'commander';
import { Repository, stateRepositoryOptions } from '../../engine/repository/index.js';
import { repoAction, repoOptions, repositorySpec, type RepoFlags } from '../repository.js';

export function registerRepo(program: Command): void {
  const repo = program
    .command('repo')
    .summary('manage the restic repository backups are kept in (init)')
    .description('The restic repository ohbackup keeps backup sessions in, one snapshot each (`ohbackup backup` without --out).');
  repoOptions(
    repo
      .command('init')
      .summary('create a new repository')
      .description(
        'Create a new restic repository (restic init) with the configured password. The state folder\'s repository ("state", the default) ' +
          'is created with a random password in <state>/repository.password (0600); any other needs a password from RESTIC_PASSWORD_FILE, ' +
          'RESTIC_PASSWORD_COMMAND, RESTIC_PASSWORD or --password-file. Exit 1 if there is a repository there already.',
      ),
  )
    .option('--json', 'print the summary line: repository (docs/cli.md, "JSON output")')
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup repo init                                        # the state folder's repository
  $ RESTIC_PASSWORD_FILE=~/.restic-pw ohbackup repo init --repo /backups/repo
  $ AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… ohbackup repo init --repo s3:https://s3.example.com/bucket --password-file ./pw`,
    )
    .action(async (opts: RepoFlags & { json?: boolean }) => {
      await repoAction(
        {
          json: opts.json,
          jsonKind: 'repo init',
          failure: 'Creating the repository failed',
          toJson: (r: { repository: string }) => r,
          format: (r) => `Created repository ${r.repository}.`,
        },
        async () => {
          const spec = repositorySpec(opts);
          const r = await Repository.init(
            spec.kind === 'state' ? await stateRepositoryOptions(spec.stateDir) : { repository: spec.repository, passwordFile: spec.passwordFile },
          );
          return { repository: r.name };
        },
      );
    });
}
