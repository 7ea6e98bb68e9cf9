/**
 * `ohbackup restore`: flags and output around planRestore and runRestore
 * (client/runs/runRestore.ts). With --to, the data root's worker runs in this
 * process (workers/embedded.ts) while the sessions run, and stops after.
 */
import { InvalidArgumentError, type Command } from 'commander';
import * as backup from '../../client/backup.js';
import { deviceQueue } from '../../client/connection.js';
import { askDeviceData, describePlan, planRestore, runRestore, type RestoreProgressEvent, type RestoreRunResult } from '../../client/runs/runRestore.js';
import { connect, waitForWorkers } from '../../client/runs/setup.js';
import { BundleNameArg } from '../../client/validate.js';
import { jsonBundle, jsonRestoredSet, jsonTotals } from '../output/schemas.js';
import { formatRestorePlan, formatRestoreResult } from '../output/results.js';
import { TOOL_TIMEOUT_HELP, parseDeviceId, parseDuration, runCommand, usageError } from '../shared.js';
import { repoOptions, type RepoFlags } from '../repository.js';
import { fromRepository, restoreFromRepositoryCommand } from './restoreRepository.js';
import { restoreColumns } from '../output/columns.js';
import { onTarget } from '../restoreTarget.js';
import { DETACH_HELP, ON_DEVICE_HELP, runDeviceCommand } from './deviceRun.js';

type Counted = { entries: number; dataBytes: number; increment: null };
type CountedRestore = RestoreRunResult & { counts: Array<Counted | null> };

function toJson(r: CountedRestore, elapsedMs: number) {
  return {
    sessionId: r.sessionId,
    uiUrl: r.uiUrl,
    from: r.from,
    to: r.to ?? null,
    device: r.device ?? null,
    taskQueue: r.taskQueue,
    map: r.map,
    bundles: r.bundles.map((b, i) => jsonBundle(b, r.counts[i] ?? null)),
    sets: r.sets.map(jsonRestoredSet),
    totals: jsonTotals(r.bundles, r.counts, elapsedMs),
    error: r.error ?? null,
    interrupted: r.interrupted,
    endedElsewhere: r.endedElsewhere ?? null,
    incomplete: r.incomplete ?? null,
  };
}

type DryRun = Parameters<typeof formatRestorePlan>[0] & { outcome: 'done' };

interface RestoreArgs {
  from: string;
  to?: string;
  map?: Record<string, string>;
  bundles: string[];
  force?: boolean;
  keepPrevious?: boolean;
  toolTimeoutMs?: number;
}

/** Onto the configured device (some worker serves its queue), or onto `--to` through a worker of our own. */
async function restore(req: RestoreArgs, onProgress: (e: RestoreProgressEvent) => void, signal: AbortSignal): Promise<CountedRestore> {
  // Every refusal (data there now without --force, a wrong set) comes before anything connects or writes.
  const plan = planRestore(req);
  // What each bundle holds, summed over its chain: its entries and data bytes, beside the set files written.
  const planned = new Map(describePlan(plan).map((b) => [b.bundleName, { entries: b.entries, dataBytes: b.bytes, increment: null }]));
  const counted = (r: RestoreRunResult): CountedRestore => ({ ...r, counts: r.bundles.map((b) => planned.get(b.bundleName) ?? null) });
  return onTarget(plan.to, signal, async (target) => {
    if (plan.to === undefined) await askDeviceData(plan, req, target.client, deviceQueue());
    return counted(await runRestore(plan, { ...target, onProgress, signal, toolTimeoutMs: req.toolTimeoutMs }));
  });
}

/** `--map old=new`, collected over repeats. */
function parseMapping(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const m = /^([^=]+)=([^=]+)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected old=new (two bundle names, like com.example.notes=com.example.notes2).');
  const [, source, target] = m as unknown as [string, string, string];
  for (const name of [source, target]) {
    if (!BundleNameArg.safeParse(name).success) throw new InvalidArgumentError(`"${name}" is not a bundle name (like com.example.notes).`);
  }
  if (previous[source] !== undefined && previous[source] !== target) throw new InvalidArgumentError(`${source} is mapped twice.`);
  return { ...previous, [source]: target };
}

interface RestoreCommandOptions extends Omit<RestoreArgs, 'bundles' | 'toolTimeoutMs'>, RepoFlags {
  device?: string;
  onDevice?: boolean;
  fromDevice?: string;
  detach?: boolean;
  toolTimeout?: number;
  json?: boolean;
  dryRun?: boolean;
}

export function registerRestore(program: Command): void {
  const command = program
    .command('restore')
    .summary('restore bundles of a backup set onto a device')
    .description(
      'Restore bundles of a backup set (`ohbackup backup --out SET`) onto a device through one restore session (a Temporal workflow). ' +
        'A set that is an increment (`ohbackup backup --base`) is restored with its bases: the root set first, then each increment, oldest first, one session per set. ' +
        'With --to, onto that data root on this machine, served by a worker this command runs for the session; ' +
        'else onto the device whose worker serves the configured task queue (`ohbackup worker` or `ohbackup dev`).',
    )
    .argument('[bundle...]', 'bundles to restore (default: every bundle the set holds completely)')
    .requiredOption(
      '--from <set>',
      'the backup set folder to restore from (an increment: with its chain of base sets), or a snapshot ID (a prefix), "latest" or session:ID of the repository (--repo)',
    )
    .option('--to <data-root>', 'restore onto this device data root (created, 0700, if missing) with an in-process worker')
    .option('--map <old=new>', "restore a bundle's data into another bundle (app_mapping_relation); repeatable", parseMapping)
    .option(
      '--device <id>',
      'restore onto the device of this ID, served by `ohbackup worker --device ID` (not with --to); from a repository also whose snapshot "latest" is',
      parseDeviceId,
    )
    .option('--on-device', ON_DEVICE_HELP)
    .option('--from-device <id>', 'with --on-device: whose snapshot --from latest means (default the device restored onto)', parseDeviceId)
    .option('--detach', DETACH_HELP)
    .option('--tool-timeout <duration>', TOOL_TIMEOUT_HELP, parseDuration)
    .option('--force', 'replace the data of bundles whose data/ is not empty (without it such a restore is refused, exit 2, and nothing is written)')
    .option('--keep-previous', 'keep the data/ tree a restore replaces, as data.before-<session> beside it (each session of a chain keeps its own)')
    .option('--dry-run', 'print what would be restored (bundles, entries, bytes, which replace data there now) and write nothing')
    .option('--json', 'print JSON Lines: status lines while it runs, then the summary (with --dry-run the plan; docs/cli.md, "JSON output")')
    .addHelpText(
      'after',
      `
Exit codes: 0 every bundle done; 3 some failed, some done; 1 all failed or the session failed;
            2 wrong usage (a bundle the set does not hold, a bad --map, a missing base set or a loop of bases,
              data there now in a bundle restored without --force);
            3 also when the set is not complete (backup_set.json says why) and no bundle was named;
            130 interrupted (Ctrl-C, or a closed terminal, releases the session).
A bundle restored from a chain is done only if every set of its chain was restored; its chain stops at the first failure.

Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*;
task queue without --to: OHBACKUP_TASK_QUEUE (default "ohbackup"), and with --device ID the device's own (ohbackup-device-ID); UI link base: OHBACKUP_UI_URL (default http://127.0.0.1:8233).

Examples:
  $ ohbackup restore --from ./set                                   # onto the device \`ohbackup dev\` / \`worker\` serves
  $ ohbackup restore --from ./set --to ./new-device                 # onto an empty data root on this machine
  $ ohbackup restore --from ./set --to ./device --dry-run           # what would be restored, and what replaced
  $ ohbackup restore --from ./set --to ./device --force             # replace the data there now
  $ ohbackup restore --from ./set --device phone-2                  # onto the device whose worker runs \`ohbackup worker --device phone-2\`
  $ ohbackup restore --from ./set com.example.notes --map com.example.notes=com.example.notes2
  $ ohbackup restore --from ./set --to ./new-device --json com.example.docs
  $ ohbackup restore --from ./inc2 --to ./new-device                # ./inc2 = backup --base ./inc1: restores ./full, ./inc1, ./inc2
  $ ohbackup restore --from latest --to ./new-device                # the newest snapshot of the state folder's repository
  $ ohbackup restore --from 1a2b3c4d --repo s3:https://s3.example.com/b --device phone-1   # a snapshot and its chain
  $ ohbackup restore --device phone-2 --repo offsite --on-device --from latest --from-device phone-1   # phone-1's data onto phone-2, run by phone-2's worker`,
    );
  repoOptions(command).action(async (bundles: string[], opts: RestoreCommandOptions, cmd: Command) => {
    for (const name of bundles) {
      if (!BundleNameArg.safeParse(name).success) usageError(cmd, `"${name}" is not a bundle name (like com.example.notes).`);
    }
    if (opts.onDevice || opts.detach || opts.fromDevice !== undefined) {
      // A device-side restore: the device's worker reads its own repository and restores onto its own data.
      if (!opts.onDevice || !opts.device || opts.repo === undefined)
        usageError(
          cmd,
          '--detach and --from-device go with --on-device, and --on-device with --device D --repo NAME (the repository by its alias on the device).',
        );
      if (opts.to !== undefined || opts.dryRun || opts.passwordFile !== undefined || opts.toolTimeout !== undefined)
        usageError(cmd, '--to, --dry-run, --password-file and --tool-timeout are for a restore run on this host, not with --on-device.');
      return runDeviceCommand(
        cmd,
        {
          kind: 'restore',
          device: opts.device,
          repository: opts.repo,
          snapshot: opts.from,
          ...(opts.fromDevice ? { fromDevice: opts.fromDevice } : {}),
          ...(bundles.length ? { bundles } : {}),
          ...(opts.map ? { map: opts.map } : {}),
          force: opts.force,
          keepPrevious: opts.keepPrevious,
        },
        opts,
      );
    }
    if (fromRepository(opts)) return restoreFromRepositoryCommand(cmd, bundles, opts);
    if (opts.device && opts.to !== undefined)
      usageError(cmd, '--device and --to exclude each other: --to restores onto a data root on this machine through its own worker.');
    if (opts.device) backup.configure({ device: opts.device });
    const req: RestoreArgs = {
      from: opts.from,
      to: opts.to,
      map: opts.map,
      bundles,
      force: opts.force,
      keepPrevious: opts.keepPrevious,
      toolTimeoutMs: opts.toolTimeout,
    };
    if (opts.dryRun) {
      await runCommand<RestoreProgressEvent, DryRun>(
        cmd,
        {
          progress: restoreColumns,
          json: opts.json,
          jsonKind: 'restore --dry-run',
          toJson: (p) => ({
            from: p.from,
            to: p.to ?? null,
            bundles: p.bundles.map((b) => ({
              bundleName: b.bundleName,
              target: b.target,
              sets: b.sets,
              entries: b.entries,
              dataBytes: b.bytes,
              replacesData: b.replacesData,
            })),
            incomplete: p.incomplete ?? null,
          }),
          format: formatRestorePlan,
          failure: 'Restore failed',
        },
        async (): Promise<DryRun> => {
          const plan = planRestore({ ...req, dryRun: true });
          if (!plan.dataRootKnown) {
            // A device elsewhere: its worker says which bundles hold data.
            const client = await connect();
            await waitForWorkers(client);
            await askDeviceData(plan, { dryRun: true }, client, deviceQueue());
          }
          return { outcome: 'done', from: plan.from, to: plan.to, bundles: describePlan(plan), ...(plan.incomplete ? { incomplete: plan.incomplete } : {}) };
        },
      );
      return;
    }
    await runCommand(
      cmd,
      { progress: restoreColumns, json: opts.json, jsonKind: 'restore', toJson, format: formatRestoreResult, failure: 'Restore failed' },
      ({ onProgress, signal }) => restore(req, onProgress, signal),
    );
  });
}
