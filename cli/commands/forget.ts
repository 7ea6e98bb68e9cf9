/**
 * `ohbackup forget`: restic's keep policy per device, never cutting a chain
 * (a kept increment keeps every base it needs); `--prune` then removes the
 * data no snapshot needs; `--dry-run` only says what would go and why.
 */
import type { Command } from 'commander';
import type { ForgetResult, KeepPolicy } from '../../engine/repository/index.js';
import { formatForget } from '../output/repository.js';
import { jsonRepository } from '../output/schemas.js';
import { openRepository, repoAction, repoOptions, type RepoFlags } from '../repository.js';
import { parseDeviceId, parseIntOption, usageError } from '../shared.js';
import { ON_DEVICE_HELP, deviceQueryCommand } from './deviceRun.js';

export type KeepFlags = Pick<KeepPolicy, 'keepLast' | 'keepDaily' | 'keepWeekly' | 'keepMonthly'>;

/** Adds the keep-policy flags (forget, schedule create). */
export function keepOptions(cmd: Command): Command {
  return cmd
    .option('--keep-last <n>', 'keep the newest n snapshots of each device', parseIntOption(1))
    .option('--keep-daily <n>', 'keep the newest snapshot of each of the last n days that have one', parseIntOption(1))
    .option('--keep-weekly <n>', 'keep the newest snapshot of each of the last n weeks that have one', parseIntOption(1))
    .option('--keep-monthly <n>', 'keep the newest snapshot of each of the last n months that have one', parseIntOption(1));
}

/** The policy the flags give, or undefined when none was given. */
export function keepPolicy(o: KeepFlags): KeepPolicy | undefined {
  const p: KeepPolicy = {};
  for (const k of ['keepLast', 'keepDaily', 'keepWeekly', 'keepMonthly'] as const) if (o[k] !== undefined) p[k] = o[k];
  return Object.keys(p).length ? p : undefined;
}

export function registerForget(program: Command): void {
  keepOptions(
    repoOptions(
      program
        .command('forget')
        .summary('remove old snapshots by a keep policy (chains kept whole)')
        .description(
          "Forget the snapshots a keep policy does not keep, per device (restic's policy, grouped by host), never one that a kept increment needs: " +
            'a chain is kept or forgotten whole. With --prune, then remove the data no snapshot needs any more. ' +
            'With --dry-run, only say which snapshots would go and which stay, and why.',
        ),
    ),
  )
    .option('--device <id>', 'only the snapshots of this device; with --on-device, the device whose worker forgets', parseDeviceId)
    .option('--on-device', ON_DEVICE_HELP)
    .option('--of-device <id>', "with --on-device: only this device's snapshots (default every device's, each by its own policy)", parseDeviceId)
    .option('--prune', 'then remove the data no remaining snapshot needs (restic prune)')
    .option('--dry-run', 'change nothing: say what would be forgotten and why')
    .option('--json', 'print the summary line: repository, dryRun, pruned, forgotten, decisions: [{ snapshot, keep, reasons }]')
    .addHelpText(
      'after',
      `
Exit codes: 0 done (also when nothing goes); 1 the repository cannot be opened or changed; 2 wrong usage (no keep flag).

Examples:
  $ ohbackup forget --keep-last 1 --dry-run
  $ ohbackup forget --repo /backups/repo --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --prune
  $ ohbackup forget --device phone-1 --keep-last 3 --json
  $ ohbackup forget --device phone-1 --repo offsite --on-device --of-device phone-1 --keep-last 3 --prune`,
    )
    .action(
      async (
        opts: RepoFlags & KeepFlags & { device?: string; onDevice?: boolean; ofDevice?: string; prune?: boolean; dryRun?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const policy = keepPolicy(opts);
        if (!policy) usageError(cmd, 'give a keep policy: at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly.');
        if (opts.dryRun && opts.prune) usageError(cmd, '--dry-run changes nothing, so it does not --prune: give one.');
        if (opts.onDevice) {
          return deviceQueryCommand(
            cmd,
            { kind: 'forget', device: opts.device, repository: opts.repo, keep: policy, fromDevice: opts.ofDevice, prune: opts.prune, dryRun: opts.dryRun },
            {
              json: opts.json,
              failure: 'Forgetting snapshots failed',
              toJson: (r: ForgetResult, where) => jsonRepository.forget({ ...r, repository: where }),
              format: formatForget,
            },
          );
        }
        if (opts.ofDevice !== undefined) usageError(cmd, '--of-device goes with --on-device (without it, --device names whose snapshots).');
        await repoAction(
          {
            json: opts.json,
            jsonKind: 'forget',
            failure: 'Forgetting snapshots failed',
            toJson: jsonRepository.forget,
            format: (r) => formatForget(r, r.repository),
          },
          async () => {
            const repository = await openRepository(opts);
            return { repository: repository.name, ...(await repository.forget(policy, { device: opts.device, prune: opts.prune, dryRun: opts.dryRun })) };
          },
        );
      },
    );
}
