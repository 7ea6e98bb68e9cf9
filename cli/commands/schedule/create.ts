/** `ohbackup schedule create`: a schedule of backups into a destination folder. */
import path from 'node:path';
import type { Command } from 'commander';
import { createSchedule, parseInterval } from '../../../client/schedules.js';
import { BundleNameArg } from '../../../client/validate.js';
import { formatView } from '../../output/schedules.js';
import { parseIntOption, usageError } from '../../shared.js';
import { jsonSchedule } from '../../output/schemas.js';
import { CONNECTION_HELP, checkId, scheduleAction } from './action.js';

export function registerScheduleCreate(schedule: Command): void {
  schedule
    .command('create')
    .summary('create a schedule of backups into a destination folder (--cron or --every)')
    .description(
      'Create a schedule of backups into a destination folder. Each run writes a new set <dest>/<UTC start time>-<run> (folders 0700). ' +
        'With --incremental, each run is an increment of the newest complete incremental set in <dest> (the first run, finding none, is a full ' +
        'backup that keeps manifests), so the sets form a chain that `ohbackup restore --from <newest>` restores in order.',
    )
    .argument('<id>', 'the schedule ID (letters, digits, ".", "_", "-")')
    .requiredOption(
      '--dest <dir>',
      'destination folder for the backup sets, as the device worker sees it (relative paths are made absolute here; created if missing)',
    )
    .option('--bundles <list>', 'comma-separated bundles to back up (default: every bundle the device reports as backup-able at run time)')
    .option('--cron <expr>', 'when to run, as a cron expression in --timezone, e.g. "0 2 * * *" (02:00 every day); give --cron or --every')
    .option('--every <interval>', 'run at this interval, e.g. 24h, 30m, 1d12h (at least 1s); give --cron or --every')
    .option('--timezone <tz>', 'IANA time zone of --cron, e.g. Europe/Berlin (default: UTC)')
    .option('--incremental', 'each run backs up only what changed since the newest complete set in --dest (default: a full backup every run)')
    .option('--rate <n>', 'files per second handed over per bundle (default 60; above 800 means 800)', parseIntOption(1))
    .option('--task-queue <name>', 'the device task queue whose worker runs the backups (default: $OHBACKUP_TASK_QUEUE, else "ohbackup")')
    .option('--paused', 'create it paused: no run starts until `schedule unpause` (`schedule trigger` still does)')
    .option('--note <text>', 'a note kept with the schedule, shown by describe and in the Temporal UI')
    .option('--json', 'print the new schedule as the summary line (as `schedule describe --json`)')
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup schedule create nightly --dest /backups/phone --incremental --cron "0 2 * * *"
  $ ohbackup schedule create berlin --dest /backups/phone --incremental --cron "30 1 * * MON-FRI" --timezone Europe/Berlin
  $ ohbackup schedule create notes --dest ./sets --bundles com.example.notes,com.example.docs --every 6h --paused --json
${CONNECTION_HELP} An existing ID fails with exit 1.`,
    )
    .action(
      async (
        id: string,
        o: {
          dest: string;
          bundles?: string;
          cron?: string;
          every?: string;
          timezone?: string;
          incremental?: boolean;
          rate?: number;
          taskQueue?: string;
          paused?: boolean;
          note?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        checkId(cmd, id);
        if (o.dest.trim() === '') usageError(cmd, '--dest needs a folder.');
        if ((o.cron === undefined) === (o.every === undefined))
          usageError(cmd, 'give the times of the runs with exactly one of --cron "0 2 * * *" and --every 24h.');
        if (o.every !== undefined && parseInterval(o.every) === undefined)
          usageError(cmd, `--every "${o.every}" is not an interval like 24h, 30m or 1d12h (at least 1s).`);
        if (o.timezone !== undefined && o.cron === undefined) usageError(cmd, '--timezone applies to --cron only.');
        const bundles = o.bundles
          ?.split(',')
          .map((b) => b.trim())
          .filter(Boolean);
        if (o.bundles !== undefined && !bundles?.length) usageError(cmd, '--bundles needs at least one bundle name.');
        for (const b of bundles ?? [])
          if (!BundleNameArg.safeParse(b).success) usageError(cmd, `--bundles: "${b}" is not a bundle name (like com.example.notes).`);
        await scheduleAction(
          cmd,
          o.json,
          () =>
            createSchedule({
              scheduleId: id,
              dest: path.resolve(o.dest),
              bundles,
              cron: o.cron,
              every: o.every,
              timezone: o.timezone,
              incremental: Boolean(o.incremental),
              rate: o.rate,
              taskQueue: o.taskQueue,
              paused: o.paused,
              note: o.note,
            }),
          (v) => `Created schedule ${v.scheduleId}.\n${formatView(v)}`,
          jsonSchedule.view,
        );
      },
    );
}
