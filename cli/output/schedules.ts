/** The schedule commands' text: a schedule, one of its runs, a run's summary. */
import type { ScheduledBackupSummary } from '../../common/scheduledBackup.js';
import type { ScheduleView, ScheduledRun } from '../../client/schedules.js';
import { formatBytes, formatOutcomes, totalsLine } from './results.js';

function runLine(r: ScheduledRun): string {
  const summary = r.summary;
  const what = summary ? `${summary.outcome}, ${summary.files} files, ${formatBytes(summary.bytes)} → ${summary.set}` : (r.error ?? '');
  return `${r.takenAt}  ${r.status.padEnd(10)} ${r.workflowId}${what ? `  ${what}` : ''}`;
}

export function formatView(v: ScheduleView): string {
  const req = v.request;
  const lines = [
    `Schedule     ${v.scheduleId}${v.paused ? ' (paused)' : ''}`,
    `When         ${v.when}${v.timezone && v.timezone !== 'UTC' ? ` (${v.timezone})` : v.when.startsWith('cron') ? ' (UTC)' : ''}`,
    ...(v.note ? [`Note         ${v.note}`] : []),
    ...(req
      ? [
          ...(req.dest !== undefined ? [`Destination  ${req.dest}`] : []),
          ...(req.repository !== undefined ? [`Repository   ${req.repository} (as the device worker resolves it)`] : []),
          ...(req.keep
            ? [
                `Keep         ${Object.entries(req.keep)
                  .map(([k, v]) => `${k.replace(/^keep/, '').toLowerCase()} ${v}`)
                  .join(', ')} (pruned at most daily)`,
              ]
            : []),
          ...(req.fullEvery !== undefined ? [`Full every   ${req.fullEvery} increments`] : []),
          ...(req.bundleTimeoutMs !== undefined ? [`Timeout      ${req.bundleTimeoutMs / 1000} s per bundle`] : []),
          `Bundles      ${req.bundles?.join(', ') ?? 'every backup-able bundle'}`,
          `Kind         ${req.incremental ? `incremental (each run chains to the newest complete ${req.repository !== undefined ? 'snapshot' : 'set in the destination'})` : 'full backup every run'}`,
          ...(req.rate !== undefined ? [`Rate         ${req.rate} files/s per bundle`] : []),
        ]
      : []),
    `Task queue   ${v.taskQueue ?? ''}`,
    `Overlap      ${v.overlap} (a run due while one is in progress is skipped)`,
    `Runs         ${v.actionsTaken} taken, ${v.skippedOverlap} skipped for overlap${v.running.length ? `, running: ${v.running.join(', ')}` : ''}`,
    `Next runs    ${v.nextRuns.length ? v.nextRuns.slice(0, 5).join('\n             ') : v.paused ? '(paused)' : '(none)'}`,
    'Recent runs' + (v.recentRuns.length ? '' : '  (none)'),
    ...[...v.recentRuns].reverse().map((r) => `  ${runLine(r)}`),
    `Temporal UI  ${v.uiUrl}`,
  ];
  return lines.join('\n');
}

export function formatSummary(summary: ScheduledBackupSummary): string {
  return [
    formatOutcomes(summary.bundles),
    '',
    // Elapsed time and throughput where the worker measured them.
    ...(summary.elapsedMs !== undefined ? [totalsLine(summary.bundles, undefined, summary.elapsedMs, 'handed over')] : []),
    ...(summary.error ? [`Session failed: ${summary.error.code} ${summary.error.message}`] : []),
    `Backup set   ${summary.set}${summary.kind === 'incremental' ? ' (incremental)' : ''}`,
    ...(summary.base ? [`Base set     ${summary.base}`] : []),
    `Session      ${summary.sessionId}`,
    `Temporal UI  ${summary.uiUrl}`,
  ].join('\n');
}
