/** `ohbackup schedule create|list|describe|pause|unpause|trigger|delete`: scheduled backups on Temporal Schedules. */
import type { Command } from 'commander';
import type { ScheduledBackupSummary } from '../../../common/scheduledBackup.js';
import { deleteSchedule, describeSchedule, listSchedules, pauseSchedule, triggerSchedule, unpauseSchedule, waitForRun } from '../../../client/schedules.js';
import { formatTable } from '../../output/results.js';
import { formatSummary, formatView } from '../../output/schedules.js';
import { EXIT, exitCodeFor } from '../../shared.js';
import { jsonSchedule, jsonScheduleListing, jsonTrigger } from '../../output/schemas.js';
import { CONNECTION_HELP, checkId, scheduleAction } from './action.js';
import { registerScheduleCreate } from './create.js';

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

  registerScheduleCreate(schedule);

  schedule
    .command('list')
    .summary('list the schedules: times, state, next run, last run and its result')
    .description(
      'List the ohbackup schedules of the namespace: times, state, next run, and the last run with its result. New schedules can take a moment to appear (Temporal lists them eventually consistently).',
    )
    .option('--json', 'print the summary line: schedules, each with scheduleId, when, paused, note, request, nextRun, lastRun')
    .addHelpText('after', `\nExamples:\n  $ ohbackup schedule list\n  $ ohbackup schedule list --json\n${CONNECTION_HELP}`)
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await scheduleAction(
        cmd,
        o.json,
        listSchedules,
        (rows) =>
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
        (rows) => ({ schedules: rows.map(jsonScheduleListing) }),
      );
    });

  schedule
    .command('describe')
    .summary('show a schedule: next run times, recent runs and their results')
    .description(
      'Show one schedule: its times, what each run backs up, the next run times, and the recent runs with their results (set, files, bytes, outcome).',
    )
    .argument('<id>', 'the schedule ID')
    .option('--json', 'print the summary line: the schedule (when, paused, request, nextRuns, recentRuns with each summary, running, uiUrl, ...)')
    .addHelpText('after', `\nExamples:\n  $ ohbackup schedule describe nightly\n  $ ohbackup schedule describe nightly --json\n${CONNECTION_HELP}`)
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      checkId(cmd, id);
      await scheduleAction(cmd, o.json, () => describeSchedule(id), formatView, jsonSchedule.view);
    });

  for (const [name, fn, summary, description] of [
    [
      'pause',
      pauseSchedule,
      'pause a schedule (no run starts until unpause)',
      'Pause a schedule: no run starts until `schedule unpause` (a run in progress goes on; `schedule trigger` still starts one).',
    ],
    ['unpause', unpauseSchedule, 'resume a paused schedule', 'Resume a paused schedule: runs start again at their times (missed ones are not made up).'],
  ] as const) {
    schedule
      .command(name)
      .summary(summary)
      .description(description)
      .argument('<id>', 'the schedule ID')
      .option('--note <text>', `why, kept with the schedule and shown by describe (default: "${name}d with ohbackup schedule ${name}")`)
      .option('--json', 'print the schedule as the summary line (as `schedule describe --json`)')
      .addHelpText(
        'after',
        `\nExamples:\n  $ ohbackup schedule ${name} nightly\n  $ ohbackup schedule ${name} nightly --note "disk maintenance"\n${CONNECTION_HELP}`,
      )
      .action(async (id: string, o: { note?: string; json?: boolean }, cmd: Command) => {
        checkId(cmd, id);
        await scheduleAction(
          cmd,
          o.json,
          () => fn(id, o.note),
          (v) => `Schedule ${v.scheduleId} ${v.paused ? 'paused' : 'active'}.`,
          jsonSchedule.view,
        );
      });
  }

  schedule
    .command('trigger')
    .summary('start a run now (skipped while one is in progress); --wait for its result')
    .description(
      'Start a run of the schedule now, also when it is paused. Skipped, like a due run, while a run is in progress (exit 1). ' +
        "Prints the run's workflow ID; with --wait, waits for the run to end and prints its backup set and every bundle's outcome.",
    )
    .argument('<id>', 'the schedule ID')
    .option('--wait', 'wait for the run to end; the exit code is then its outcome (0 every bundle done, 3 some, 1 none)')
    .option('--json', 'print the summary line: scheduleId, skipped, reason, run (workflowId, status, uiUrl, summary)')
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
      await scheduleAction(
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
        jsonTrigger,
        (r) => (r.skipped ? EXIT.failed : o.wait ? outcomeExit(r.run.summary) : EXIT.ok),
      );
    });

  schedule
    .command('delete')
    .summary('delete a schedule (its backup sets are kept)')
    .description('Delete a schedule. A run in progress goes on; the backup sets in its destination are kept.')
    .argument('<id>', 'the schedule ID')
    .option('--json', 'print the summary line: scheduleId, deleted (true)')
    .addHelpText('after', `\nExamples:\n  $ ohbackup schedule delete nightly\n  $ ohbackup schedule delete nightly --json\n${CONNECTION_HELP}`)
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      checkId(cmd, id);
      await scheduleAction(
        cmd,
        o.json,
        async () => {
          await deleteSchedule(id);
          return { scheduleId: id, deleted: true };
        },
        (r) => `Deleted schedule ${r.scheduleId} (a run in progress goes on; its backup sets are kept).`,
        (r) => r,
      );
    });
}
