/** `ohbackup backup`: flags and output around runBackup (client/runs/runBackup.ts). */
import type { Command } from 'commander';
import * as backup from '../../client/backup.js';
import { runBackup, type BackupProgressEvent, type BackupRunResult } from '../../client/runs/runBackup.js';
import { BundleNameArg, SessionIdArg, parseArg } from '../../client/validate.js';
import type { ProgressColumns } from '../output/progress.js';
import { formatBackupResult, formatBytes } from '../output/results.js';
import { runDeviceCommand } from './deviceRun.js';
import { TOOL_TIMEOUT_HELP, parseDeviceId, parseDuration, parseIntOption, runCommand, usageError } from '../shared.js';

function startSuffix(e: Extract<BackupProgressEvent, { type: 'start' }>): string {
  if (e.attached) return ' (re-attached: completing its set)';
  if (e.base) return ` (incremental, base ${e.base})`;
  return e.kind === 'incremental' ? ' (incremental session, in full)' : '';
}

/** A bar follows the bytes handed over against the capability file's estimate; it completes when the bundle ends. */
export const backupColumns: ProgressColumns<BackupProgressEvent> = {
  barFormat: ' {bundle} |{bar}| {files} files  {size}  {status}',
  startLine: (e, onBar) =>
    !onBar
      ? `Session ${e.sessionId}: backing up ${e.bundles.join(', ')}${startSuffix(e)}`
      : e.kind === 'incremental'
        ? `Session ${e.sessionId}${startSuffix(e)}`
        : undefined,
  beginLine: (e) => `begin   ${e.bundleName}`,
  begin: (e) => ({ total: Math.max(1, e.estimatedBytes ?? 1), fields: { files: 0, size: formatBytes(0), status: '' } }),
  file: (e, total) => ({ value: Math.min(e.bytes, Math.floor(total * 0.99)), fields: { files: e.files, size: formatBytes(e.bytes) } }),
  end: (o, total) => ({
    value: total,
    fields: { files: o.files, size: formatBytes(o.bytes), status: o.state === 'done' ? 'done' : `${o.state} ${o.error?.code ?? ''}` },
  }),
};

function toJson({ sessionId, uiUrl, out, kind, base, bundles, error, endedElsewhere }: BackupRunResult) {
  return { sessionId, uiUrl, out, kind, ...(base ? { base } : {}), bundles, ...(error ? { error } : {}), ...(endedElsewhere ? { endedElsewhere } : {}) };
}

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .summary('back up bundles of the device into a backup set folder')
    .description(
      'Back up bundles of the device into a backup set folder: every handed-over file, capabilities.json and backup_set.json. ' +
        'Runs one backup session (a Temporal workflow) served by the device worker (`ohbackup worker` or `ohbackup dev`). ' +
        "With --incremental, an incremental session that also keeps each bundle's manifest (<bundle>/manifest.jsonl) in the set; " +
        'with --base SET (any earlier set: a plain one serves through its index), only files new or changed since SET are handed over, and deletions are recorded ' +
        '(`ohbackup restore --from` the increment restores SET and the increment after it).',
    )
    .argument('[bundle...]', 'bundles to back up (default: every bundle the device reports as backup-able)')
    .option('--out <dir>', 'the backup set folder to write (new or empty); required unless --device and --repo')
    .option(
      '--repo <name>',
      "with --device: a device-side run into the repository the device's worker names so (OHBACKUP_REPOSITORY_<NAME>); --base is then a snapshot",
    )
    .option('--detach', 'with --device and --repo: start the run, print its ID and UI link, and leave it (`ohbackup follow ID` re-attaches)')
    .option('--rate <n>', 'files per second handed over per bundle (default 60; above 800 means 800)', parseIntOption(1))
    .option('--incremental', "an incremental session: every bundle in full (without --base), each bundle's manifest kept in the set")
    .option(
      '--base <set>',
      'back up only what changed since this set (any earlier backup set; implies --incremental); bundles it does not hold completely go in full',
    )
    .option(
      '--attach <session-id>',
      'complete the unfinished set in --out: re-attach to its session (its backup was killed or crashed), resuming after the last file the set holds',
    )
    .option(
      '--device <id>',
      'back up the device of this ID, served by `ohbackup worker --device ID` (its bundle work runs on its own task queue)',
      parseDeviceId,
    )
    .option('--tool-timeout <duration>', TOOL_TIMEOUT_HELP, parseDuration)
    .option('--json', 'print the result as one JSON object (sessionId, uiUrl, out, kind, base, bundles, endedElsewhere)')
    .addHelpText(
      'after',
      `
Exit codes: 0 every bundle done; 3 some failed, some done; 1 all failed or the session failed;
            2 wrong usage (also: --out in use by another backup, or inside a bundle's data/); 130 interrupted (Ctrl-C, or a closed
            terminal, releases the session); a session released by another client ends the run with 3 (some bundles done) or 1.

Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*;
task queue: OHBACKUP_TASK_QUEUE (default "ohbackup"), and with --device ID the device's own (ohbackup-device-ID); UI link base: OHBACKUP_UI_URL (default http://127.0.0.1:8233).

Examples:
  $ ohbackup backup --out ./set
  $ ohbackup backup --out ./set-notes com.example.notes com.example.docs
  $ TEMPORAL_ADDRESS=127.0.0.1:7233 ohbackup backup --out ./set --rate 200 --json
  $ ohbackup backup --device phone-1 --out ./set-phone-1           # the device whose worker runs \`ohbackup worker --device phone-1\`
  $ ohbackup backup --out ./full                                    # a full backup
  $ ohbackup backup --base ./full --out ./inc1                      # only what changed since ./full
  $ ohbackup backup --base ./inc1 --out ./inc2                      # ... and since ./inc1
  $ ohbackup restore --from ./inc2 --to ./new-device                # restores ./full, ./inc1, then ./inc2
  $ ohbackup backup --attach ohbackup-backup-1c9e… --out ./set      # the run writing ./set was killed: complete it
  $ ohbackup backup --device phone-1 --repo offsite --incremental   # run on phone-1's worker, into its repository "offsite"
  $ ohbackup backup --device phone-1 --repo offsite --base latest   # an increment of phone-1's latest snapshot there`,
    )
    .action(
      async (
        bundles: string[],
        opts: {
          out?: string;
          repo?: string;
          detach?: boolean;
          rate?: number;
          incremental?: boolean;
          base?: string;
          attach?: string;
          device?: string;
          toolTimeout?: number;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        if (opts.repo !== undefined || opts.detach) {
          // A device-side run: the device's worker runs the whole tool side into its own repository.
          if (!opts.device || opts.repo === undefined)
            usageError(cmd, '--repo and --detach go with --device: the device-side run names the repository by its alias on the device.');
          if (opts.out !== undefined || opts.attach !== undefined)
            usageError(cmd, '--out and --attach are for a backup into a set folder on this host, not with --repo.');
          return runDeviceCommand(
            cmd,
            { kind: 'backup', device: opts.device, repository: opts.repo, bundles, rate: opts.rate, incremental: opts.incremental, base: opts.base },
            opts,
          );
        }
        if (opts.out === undefined) usageError(cmd, "required option '--out <dir>' not specified (or --device D --repo NAME for a device-side run)");
        if (opts.attach !== undefined) {
          if (!SessionIdArg.safeParse(opts.attach).success) usageError(cmd, `--attach "${opts.attach}" is not a session ID.`);
          if (bundles.length || opts.incremental || opts.base !== undefined)
            usageError(cmd, '--attach completes the set as its backup started it: name no bundles, --incremental or --base with it.');
        }
        for (const name of bundles) {
          try {
            parseArg(BundleNameArg, name, 'bundle');
          } catch {
            usageError(cmd, `"${name}" is not a bundle name (like com.example.notes).`);
          }
        }
        if (opts.device) backup.configure({ device: opts.device });
        await runCommand(
          cmd,
          { progress: backupColumns, json: opts.json, toJson, format: formatBackupResult, failure: 'Backup failed' },
          ({ onProgress, signal }) =>
            runBackup({
              out: opts.out!,
              bundles,
              rate: opts.rate,
              incremental: opts.incremental,
              base: opts.base,
              attach: opts.attach,
              toolTimeoutMs: opts.toolTimeout,
              onProgress,
              signal,
            }),
        );
      },
    );
}
