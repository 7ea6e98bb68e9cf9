/** `ohbackup schedule create`: a schedule of backups into a destination folder. */
import path from 'node:path';
import type { Command } from 'commander';
import { createSchedule, parseInterval } from '../../../client/schedules.js';
import { BundleNameArg } from '../../../client/validate.js';
import { formatView } from '../../output/schedules.js';
import { parseIntOption, usageError } from '../../shared.js';
import { DEFAULTS } from '../../../common/session.js';
import { travelProblem } from '../../../config/repository.js';
import { keepOptions, keepPolicy, type KeepFlags } from '../forget.js';

/** A local repository path is made absolute here (as --dest); an alias, "state" or a back end string travels as given. */
function repoForWorker(repo: string): string {
  return /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(repo) || /^[a-z0-9]+:/i.test(repo) ? repo : path.resolve(repo);
}
import { jsonSchedule } from '../../output/schemas.js';
import { CONNECTION_HELP, checkId, scheduleAction } from './action.js';

export function registerScheduleCreate(schedule: Command): void {
  const command = schedule
    .command('create')
    .summary('create a schedule of backups into a destination folder (--cron or --every)')
    .description(
      'Create a schedule of backups into a destination folder. Each run writes a new set <dest>/<UTC start time>-<run> (folders 0700). ' +
        'With --incremental, each run is an increment of the newest complete incremental set in <dest> (the first run, finding none, is a full ' +
        'backup that keeps manifests), so the sets form a chain that `ohbackup restore --from <newest>` restores in order. ' +
        'With --repo instead of --dest, each run is a snapshot in that repository (an increment of the newest one that keeps manifests; a new full one ' +
        'every --full-every increments), then the keep policy (--keep-*) is applied, chains kept whole, pruning at most once a day. ' +
        'The repository is resolved by the device worker from its own environment: no password travels with the schedule.',
    )
    .argument('<id>', 'the schedule ID (letters, digits, ".", "_", "-")')
    .option(
      '--dest <dir>',
      'destination folder for the backup sets, as the device worker sees it (relative paths are made absolute here; created if missing); give --dest or --repo',
    )
    .option(
      '--repo <repo>',
      'instead of --dest: a snapshot per run in this repository, as the device worker resolves it: an alias NAME (OHBACKUP_REPOSITORY_NAME and ' +
        'OHBACKUP_REPOSITORY_NAME_PASSWORD_FILE in the worker\'s environment), "state" (the worker\'s state folder), or a repository string without credentials',
    )
    .option('--bundles <list>', 'comma-separated bundles to back up (default: every bundle the device reports as backup-able at run time)')
    .option('--cron <expr>', 'when to run, as a cron expression in --timezone, e.g. "0 2 * * *" (02:00 every day); give --cron or --every')
    .option('--every <interval>', 'run at this interval, e.g. 24h, 30m, 1d12h (at least 1s); give --cron or --every')
    .option('--timezone <tz>', 'IANA time zone of --cron, e.g. Europe/Berlin (default: UTC)')
    .option('--incremental', 'each run backs up only what changed since the newest complete set in --dest (default: a full backup every run)')
    .option('--full-every <n>', 'with --incremental and --repo: a new full backup once the chain has n increments', parseIntOption(1))
    .option('--timeout <duration>', "each bundle's deadline in unattended runs, e.g. 30m or 2h (default 15m; at most 4h)")
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
  $ ohbackup schedule create nightly --repo offsite --incremental --full-every 6 --keep-daily 7 --keep-weekly 4 --cron "0 2 * * *" --timeout 1h
    # the worker's environment: OHBACKUP_REPOSITORY_OFFSITE=s3:https://s3.example.com/b OHBACKUP_REPOSITORY_OFFSITE_PASSWORD_FILE=/etc/ohbackup/pw
  $ ohbackup schedule create notes --dest ./sets --bundles com.example.notes,com.example.docs --every 6h --paused --json
${CONNECTION_HELP} An existing ID fails with exit 1.`,
    );
  keepOptions(command).action(
    async (
      id: string,
      o: KeepFlags & {
        dest?: string;
        repo?: string;
        fullEvery?: number;
        timeout?: string;
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
      if (o.dest === undefined && o.repo === undefined)
        usageError(cmd, "required option '--dest <dir>' not specified (or --repo <repo>: snapshots in a repository instead of set folders).");
      if (o.dest !== undefined && o.repo !== undefined)
        usageError(cmd, 'give where the backups go: --dest DIR (set folders) or --repo REPO (snapshots), not both.');
      if (o.dest !== undefined && o.dest.trim() === '') usageError(cmd, '--dest needs a folder.');
      const keep = keepPolicy(o);
      if (o.repo === undefined && (keep || o.fullEvery !== undefined)) usageError(cmd, '--keep-* and --full-every apply to --repo schedules.');
      if (o.fullEvery !== undefined && !o.incremental) usageError(cmd, '--full-every applies to --incremental schedules.');
      const repoProblem = o.repo !== undefined ? travelProblem(o.repo) : undefined;
      if (repoProblem) usageError(cmd, `--repo cannot be sent to the worker: ${repoProblem}.`);
      const timeoutMs = o.timeout !== undefined ? parseInterval(o.timeout) : undefined;
      if (o.timeout !== undefined && (timeoutMs === undefined || timeoutMs > DEFAULTS.maxTimeoutMs))
        usageError(cmd, `--timeout "${o.timeout}" is not a duration like 30m or 2h, at most 4h.`);
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
            ...(o.dest !== undefined ? { dest: path.resolve(o.dest) } : {}),
            ...(o.repo !== undefined ? { repository: repoForWorker(o.repo) } : {}),
            ...(keep ? { keep } : {}),
            ...(o.fullEvery !== undefined ? { fullEvery: o.fullEvery } : {}),
            ...(timeoutMs !== undefined ? { bundleTimeoutMs: timeoutMs } : {}),
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
