/** `ohbackup backup`: flags and output around runBackup (client/runs/runBackup.ts). */
import type { Command } from 'commander';
import * as backup from '../../client/backup.js';
import { runBackup, type BackupRunResult } from '../../client/runs/runBackup.js';
import { BundleNameArg, SessionIdArg, parseArg } from '../../client/validate.js';
import { readBundleCounts, type BundleCounts } from '../../client/sets/counts.js';
import { DEFAULTS } from '../../common/session.js';
import { jsonBundle, jsonTotals } from '../output/schemas.js';
import { backupColumns } from '../output/columns.js';
import { watchPauses } from '../pauses.js';
import { formatBackupResult } from '../output/results.js';
import { TOOL_TIMEOUT_HELP, parseDeviceId, parseDuration, parseIntOption, runCommand, usageError } from '../shared.js';
import { repoOptions } from '../repository.js';
import { ON_DEVICE_HELP, DETACH_HELP, runDeviceCommand } from './deviceRun.js';

type CountedBackup = BackupRunResult & { counts: Array<BundleCounts | null> };

/** Each bundle's entries and data (its index in the set), beside its set files. */
async function withCounts(r: BackupRunResult): Promise<CountedBackup> {
  return { ...r, counts: await Promise.all(r.bundles.map((b) => readBundleCounts(r.out, b.bundleName, r.base))) };
}

function toJson({ sessionId, uiUrl, out, kind, base, bundles, counts, error, endedElsewhere, interrupted }: CountedBackup, elapsedMs: number) {
  return {
    sessionId,
    uiUrl,
    out,
    kind,
    base: base ?? null,
    bundles: bundles.map((b, i) => jsonBundle(b, counts[i] ?? null)),
    totals: jsonTotals(bundles, counts, elapsedMs),
    error: error ?? null,
    interrupted,
    endedElsewhere: endedElsewhere ?? null,
  };
}

export function registerBackup(program: Command): void {
  const command = program
    .command('backup')
    .summary('back up bundles of the device into a backup set folder')
    .description(
      'Back up bundles of the device into a backup set folder: every handed-over file, capabilities.json and backup_set.json. ' +
        'Runs one backup session (a Temporal workflow) served by the device worker (`ohbackup worker` or `ohbackup dev`). ' +
        "With --incremental, an incremental session that also keeps each bundle's manifest (<bundle>/manifest.jsonl) in the set; " +
        'with --base SET (any earlier set: a plain one serves through its index), only files new or changed since SET are handed over, and deletions are recorded ' +
        '(`ohbackup restore --from` the increment restores SET and the increment after it). ' +
        "Without --out, the session is stored as one snapshot in a restic repository (--repo, else $OHBACKUP_REPOSITORY, else the state folder's own).",
    )
    .argument('[bundle...]', 'bundles to back up (default: every bundle the device reports as backup-able)')
    .option('--out <dir>', 'the backup set folder to write (new or empty); without it, a snapshot in the repository (--repo)')
    .option(
      '--rate <n>',
      "files per second handed over per bundle (default 800, a session's most; the library's sessions keep the reference's 60)",
      parseIntOption(1),
    )
    .option('--incremental', "an incremental session: every bundle in full (without --base), each bundle's manifest kept in the set")
    .option(
      '--attach <session-id>',
      'complete the unfinished set in --out: re-attach to its session (its backup was killed or crashed), resuming after the last file the set holds',
    )
    .option(
      '--base <set>',
      'back up only what changed since this set (any earlier backup set; with a repository, a snapshot ID or "latest"; implies --incremental); bundles it lacks go in full',
    )
    .option(
      '--device <id>',
      'back up the device of this ID, served by `ohbackup worker --device ID` (its bundle work runs on its own task queue)',
      parseDeviceId,
    )
    .option('--on-device', ON_DEVICE_HELP)
    .option('--detach', DETACH_HELP)
    .option('--tool-timeout <duration>', TOOL_TIMEOUT_HELP, parseDuration)
    .option('--json', 'print JSON Lines: status lines while it runs, then the summary (docs/cli.md, "JSON output"; with a repository also snapshot and store)')
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
  $ ohbackup backup                                                 # a snapshot in the state folder's repository
  $ ohbackup backup --repo s3:https://s3.example.com/b --incremental  # a full snapshot that keeps manifests (RESTIC_PASSWORD_FILE set)
  $ ohbackup backup --repo s3:https://s3.example.com/b --base latest  # an increment of the device's newest snapshot
  $ ohbackup backup --device phone-1 --repo offsite --on-device --incremental   # run on phone-1's worker, into its repository "offsite"
  $ ohbackup backup --device phone-1 --repo offsite --on-device --base latest   # an increment of phone-1's latest snapshot there`,
    );
  repoOptions(command).action(
    async (
      bundles: string[],
      opts: {
        out?: string;
        repo?: string;
        passwordFile?: string;
        rate?: number;
        incremental?: boolean;
        base?: string;
        attach?: string;
        device?: string;
        onDevice?: boolean;
        detach?: boolean;
        toolTimeout?: number;
        json?: boolean;
      },
      cmd: Command,
    ) => {
      // An operator's tool copies or links each file as it comes and closes its fd at once (and the session caps the fds
      // it holds open), so the reference's pacing of 60/s would only make the run slower: docs/design/performance.md.
      opts.rate ??= DEFAULTS.maxSendRate;
      if (opts.attach !== undefined) {
        if (!SessionIdArg.safeParse(opts.attach).success) usageError(cmd, `--attach "${opts.attach}" is not a session ID.`);
        if (bundles.length || opts.incremental || opts.base !== undefined)
          usageError(cmd, '--attach completes the set as its backup started it: name no bundles, --incremental or --base with it.');
        if (opts.out === undefined) usageError(cmd, '--attach completes a set folder: give it with --out.');
      }
      for (const name of bundles) {
        try {
          parseArg(BundleNameArg, name, 'bundle');
        } catch {
          usageError(cmd, `"${name}" is not a bundle name (like com.example.notes).`);
        }
      }
      if (opts.onDevice || opts.detach) {
        // A device-side run: the device's worker runs the whole tool side into its own repository.
        if (!opts.onDevice || !opts.device || opts.repo === undefined)
          usageError(cmd, '--detach goes with --on-device, and --on-device with --device D --repo NAME (the repository by its alias on the device).');
        if (opts.out !== undefined || opts.attach !== undefined || opts.passwordFile !== undefined || opts.toolTimeout !== undefined)
          usageError(cmd, '--out, --attach, --password-file and --tool-timeout are for a run on this host, not with --on-device.');
        return runDeviceCommand(
          cmd,
          { kind: 'backup', device: opts.device, repository: opts.repo, bundles, rate: opts.rate, incremental: opts.incremental, base: opts.base },
          opts,
        );
      }
      if (opts.device) backup.configure({ device: opts.device });
      if (opts.out === undefined) {
        // Loaded only for a backup into a repository: a set folder's backup needs none of its code (docs/design/performance.md).
        const { backupToRepositoryCommand } = await import('./backupRepository.js');
        return backupToRepositoryCommand(cmd, bundles, opts);
      }
      if (opts.repo !== undefined || opts.passwordFile !== undefined)
        usageError(cmd, '--out writes a set folder; --repo and --password-file name a repository: give one.');
      const out = opts.out;
      await runCommand(
        cmd,
        { progress: backupColumns, json: opts.json, jsonKind: 'backup', toJson, format: formatBackupResult, failure: 'Backup failed' },
        async ({ onProgress, signal }) => {
          const rates = watchPauses(onProgress);
          try {
            return withCounts(
              await runBackup({
                out,
                bundles,
                rate: opts.rate,
                incremental: opts.incremental,
                base: opts.base,
                attach: opts.attach,
                toolTimeoutMs: opts.toolTimeout,
                onProgress: rates.onProgress,
                signal,
              }),
            );
          } finally {
            rates.stop();
          }
        },
      );
    },
  );
}
