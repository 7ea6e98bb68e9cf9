/** `ohbackup schedule create|list|describe|pause|unpause|trigger|delete`: scheduled backups on Temporal Schedules. */
import path from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_TEMPORAL_ADDRESS } from '../../common/env.js';
import { temporalTarget } from '../../common/temporalConfig.js';
import type { ScheduledBackupSummary } from '../../common/scheduledBackup.js';
import { closeConnection } from '../../client/connection.js';
import { toBusinessError } from '../../client/failures.js';
import {
  ScheduleError,
  createSchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  parseInterval,
  pauseSchedule,
  triggerSchedule,
  unpauseSchedule,
  waitForRun,
} from '../../client/schedules.js';
import { BundleNameArg } from '../../client/validate.js';
import { isConnectFailure, unreachableMessage } from '../../client/runs/setup.js';
import { formatTable } from '../output/results.js';
import { formatSummary, formatView } from '../output/schedules.js';
import { EXIT, exitCodeFor, parseIntOption, usageError } from '../shared.js';

/** Schedule IDs end up in workflow IDs and UI links: keep them plain. */
const SCHEDULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

const CONNECTION_HELP = `
Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*.
Exit codes: 0 done; 1 failed (no such schedule, it already exists, the service is unreachable); 2 wrong usage.`;

/** Runs one schedule operation: prints its result, maps its failures to exit codes, and closes the connection. */
async function run<T>(cmd: Command, json: boolean | undefined, fn: () => Promise<T>, print: (r: T) => string, exitCode: (r: T) => number = () => EXIT.ok): Promise<void> {
  let usage: string | undefined;
  try {
    const r = await fn();
    console.log(json ? JSON.stringify(r, null, 2) : print(r));
    process.exitCode = exitCode(r);
  } catch (err) {
    if (err instanceof ScheduleError && err.kind === 'invalid') usage = err.message;
    else {
      process.exitCode = EXIT.failed;
      if (err instanceof ScheduleError) console.error(`ohbackup schedule: ${err.message}`);
      else if (isConnectFailure(err)) console.error(unreachableMessage(temporalTarget().connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS, (err as Error).message));
      else console.error(`ohbackup schedule: ${toBusinessError(err).message}`);
    }
  } finally {
    await closeConnection();
  }
  if (usage) usageError(cmd, usage);
}

function checkId(cmd: Command, id: string): void {
  if (!SCHEDULE_ID.test(id)) usageError(cmd, `"${id}" is not a schedule ID: letters, digits, '.', '_' and '-', starting with a letter or digit.`);
}

const outcomeExit = (s: ScheduledBackupSummary | undefined) => (s ? exitCodeFor(s.outcome) : EXIT.failed);

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .summary('scheduled backups (Temporal Schedules): create, list, describe, pause, unpause, trigger, delete')
    .description(
      'Back up bundles of a device on a timetable, with Temporal Schedules. Each run is a workflow on the device worker that ' +
        'writes a new backup set into the destination folder, like `ohbackup backup --out`; with --incremental each run is an ' +
        'increment of the newest complete set there (the first one is a full backup). A run due while the previous one is still ' +
        'in progress is skipped (overlap policy SKIP). The device worker (`ohbackup worker` / `ohbackup dev`) must be running for runs to happen.',
    )
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup schedule create nightly --dest /backups/phone --incremental --cron "0 2 * * *"
  $ ohbackup schedule create notes --dest /backups/notes --bundles com.example.notes --every 6h
  $ ohbackup schedule list
  $ ohbackup schedule trigger nightly --wait
  $ ohbackup restore --from /backups/phone/<newest set> --to ./device2
${CONNECTION_HELP}`,
    );

  schedule
    .command('create')
    .summary('create a schedule of backups into a destination folder (--cron or --every)')
    .description(
      'Create a schedule of backups into a destination folder. Each run writes a new set <dest>/<UTC start time>-<run> (folders 0700). ' +
        'With --incremental, each run is an increment of the newest complete incremental set in <dest> (the first run, finding none, is a full ' +
        'backup that keeps manifests), so the sets form a chain that `ohbackup restore --from <newest>` restores in order.',
    )
    .argument('<id>', 'the schedule ID (letters, digits, ".", "_", "-")')
    .requiredOption('--dest <dir>', 'destination folder for the backup sets, as the device worker sees it (relative paths are made absolute here; created if missing)')
    .option('--bundles <list>', 'comma-separated bundles to back up (default: every bundle the device reports as backup-able at run time)')
    .option('--cron <expr>', 'when to run, as a cron expression in --timezone, e.g. "0 2 * * *" (02:00 every day); give --cron or --every')
    .option('--every <interval>', 'run at this interval, e.g. 24h, 30m, 1d12h (at least 1s); give --cron or --every')
    .option('--timezone <tz>', 'IANA time zone of --cron, e.g. Europe/Berlin (default: UTC)')
    .option('--incremental', 'each run backs up only what changed since the newest complete set in --dest (default: a full backup every run)')
    .option('--rate <n>', 'files per second handed over per bundle (default 60; above 800 means 800)', parseIntOption(1))
    .option('--task-queue <name>', 'the device task queue whose worker runs the backups (default: $OHBACKUP_TASK_QUEUE, else "ohbackup")')
    .option('--paused', 'create it paused: no run starts until `schedule unpause` (`schedule trigger` still does)')
    .option('--note <text>', 'a note kept with the schedule, shown by describe and in the Temporal UI')
    .option('--json', 'print the new schedule as one JSON object (as `schedule describe --json`)')
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
        o: { dest: string; bundles?: string; cron?: string; every?: string; timezone?: string; incremental?: boolean; rate?: number; taskQueue?: string; paused?: boolean; note?: string; json?: boolean },
        cmd: Command,
      ) => {
        checkId(cmd, id);
        if (o.dest.trim() === '') usageError(cmd, '--dest needs a folder.');
        if ((o.cron === undefined) === (o.every === undefined)) usageError(cmd, 'give the times of the runs with exactly one of --cron "0 2 * * *" and --every 24h.');
        if (o.every !== undefined && parseInterval(o.every) === undefined) usageError(cmd, `--every "${o.every}" is not an interval like 24h, 30m or 1d12h (at least 1s).`);
        if (o.timezone !== undefined && o.cron === undefined) usageError(cmd, '--timezone applies to --cron only.');
        const bundles = o.bundles?.split(',').map((b) => b.trim()).filter(Boolean);
        if (o.bundles !== undefined && !bundles?.length) usageError(cmd, '--bundles needs at least one bundle name.');
        for (const b of bundles ?? []) if (!BundleNameArg.safeParse(b).success) usageError(cmd, `--bundles: "${b}" is not a bundle name (like com.example.notes).`);
        await run(
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
        );
      },
    );

  schedule
    .command('list')
    .summary('list the schedules: times, state, next run, last run and its result')
    .description('List the ohbackup schedules of the namespace: times, state, next run, and the last run with its result. New schedules can take a moment to appear (Temporal lists them eventually consistently).')
    .option('--json', 'print one JSON array (scheduleId, when, paused, note, request, nextRun, lastRun)')
    .addHelpText('after', `\nExamples:\n  $ ohbackup schedule list\n  $ ohbackup schedule list --json\n${CONNECTION_HELP}`)
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await run(cmd, o.json, listSchedules, (rows) =>
        rows.length === 0
          ? 'no schedules (create one with `ohbackup schedule create`)'
          : formatTable(
              ['schedule', 'when', 'state', 'next run', 'last run', 'result', 'destination'],
              rows.map((r) => [
                r.scheduleId,
                r.when,
                r.paused ? 'paused' : 'active',
                r.nextRun ?? '',
                r.lastRun?.takenAt ?? '',
                r.lastRun ? (r.lastRun.summary?.outcome ?? r.lastRun.status.toLowerCase()) : '',
                r.request?.dest ?? '',
              ]),
            ),
      );
    });

  schedule
    .command('describe')
    .summary('show a schedule: next run times, recent runs and their results')
    .description('Show one schedule: its times, what each run backs up, the next run times, and the recent runs with their results (set, files, bytes, outcome).')
    .argument('<id>', 'the schedule ID')
    .option('--json', 'print one JSON object (when, paused, request, nextRuns, recentRuns with each summary, running, uiUrl, ...)')
    .addHelpText('after', `\nExamples:\n  $ ohbackup schedule describe nightly\n  $ ohbackup schedule describe nightly --json\n${CONNECTION_HELP}`)
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      checkId(cmd, id);
      await run(cmd, o.json, () => describeSchedule(id), formatView);
    });

  for (const [name, fn, summary, description] of [
    ['pause', pauseSchedule, 'pause a schedule (no run starts until unpause)', 'Pause a schedule: no run starts until `schedule unpause` (a run in progress goes on; `schedule trigger` still starts one).'],
    ['unpause', unpauseSchedule, 'resume a paused schedule', 'Resume a paused schedule: runs start again at their times (missed ones are not made up).'],
  ] as const) {
    schedule
      .command(name)
      .summary(summary)
      .description(description)
      .argument('<id>', 'the schedule ID')
      .option('--note <text>', `why, kept with the schedule and shown by describe (default: "${name}d with ohbackup schedule ${name}")`)
      .option('--json', 'print the schedule as one JSON object (as `schedule describe --json`)')
      .addHelpText('after', `\nExamples:\n  $ ohbackup schedule ${name} nightly\n  $ ohbackup schedule ${name} nightly --note "disk maintenance"\n${CONNECTION_HELP}`)
      .action(async (id: string, o: { note?: string; json?: boolean }, cmd: Command) => {
        checkId(cmd, id);
        await run(cmd, o.json, () => fn(id, o.note), (v) => `Schedule ${v.scheduleId} ${v.paused ? 'paused' : 'active'}.`);
      });
  }

  schedule
    .command('trigger')
    .summary('start a run now (skipped while one is in progress); --wait for its result')
    .description(
      'Start a run of the schedule now, also when it is paused. Skipped, like a due run, while a run is in progress (exit 1). ' +
        'Prints the run\'s workflow ID; with --wait, waits for the run to end and prints its backup set and every bundle\'s outcome.',
    )
    .argument('<id>', 'the schedule ID')
    .option('--wait', 'wait for the run to end; the exit code is then its outcome (0 every bundle done, 3 some, 1 none)')
    .option('--json', 'print one JSON object (scheduleId, skipped, run: workflowId, status, uiUrl, summary)')
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup schedule trigger nightly
  $ ohbackup schedule trigger nightly --wait --json
${CONNECTION_HELP} With --wait: 0 every bundle done, 3 some failed, 1 none done (or skipped).`,
    )
    .action(async (id: string, o: { wait?: boolean; json?: boolean }, cmd: Command) => {
      checkId(cmd, id);
      await run(
        cmd,
        o.json,
        async () => {
          const r = await triggerSchedule(id);
          return r.skipped || !o.wait ? r : { ...r, run: await waitForRun(r.run) };
        },
        (r) => {
          if (r.skipped) return `Schedule ${r.scheduleId}: the run was skipped: ${r.reason}.`;
          const head = `Schedule ${r.scheduleId}: run ${r.run.workflowId} ${r.run.status.toLowerCase()}\nTemporal UI  ${r.run.uiUrl}`;
          if (!o.wait) return head;
          return `${head}\n${r.run.error ? `Failed: ${r.run.error}\n` : ''}${r.run.summary ? `\n${formatSummary(r.run.summary)}` : ''}`;
        },
        (r) => (r.skipped ? EXIT.failed : o.wait ? outcomeExit(r.run.summary) : EXIT.ok),
      );
    });

  schedule
    .command('delete')
    .summary('delete a schedule (its backup sets are kept)')
    .description('Delete a schedule. A run in progress goes on; the backup sets in its destination are kept.')
    .argument('<id>', 'the schedule ID')
    .option('--json', 'print one JSON object ({"scheduleId", "deleted": true})')
    .addHelpText('after', `\nExamples:\n  $ ohbackup schedule delete nightly\n  $ ohbackup schedule delete nightly --json\n${CONNECTION_HELP}`)
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      checkId(cmd, id);
      await run(
        cmd,
        o.json,
        async () => {
          await deleteSchedule(id);
          return { scheduleId: id, deleted: true };
        },
        (r) => `Deleted schedule ${r.scheduleId} (a run in progress goes on; its backup sets are kept).`,
      );
    });
}
