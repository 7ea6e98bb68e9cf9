/** The results of commands as plain text: sizes, tables, bundle outcomes, a backup's and a restore's summary. */
import { deviceTaskQueue } from '../../common/deviceQueue.js';
import { formatBytes } from '../../common/format.js';
import type { BundleOutcome } from '../../common/session.js';
import type { BackupRunResult } from '../../client/runs/runBackup.js';
import type { BundleCounts } from '../../client/sets/counts.js';
import type { PlannedBundle, RestoreRunResult } from '../../client/runs/runRestore.js';

export { formatBytes };

/** What a bundle holds, as the tables show it (client/sets/counts.ts; a restore's plan). */
export type Counted = Pick<BundleCounts, 'entries' | 'dataBytes'> & { increment?: BundleCounts['increment'] };

/** A duration in words: 850 ms, 12.3 s, 4 min 05 s, 1 h 02 min. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** A run's totals line: entries and data, the set files handed over, elapsed time and throughput. */
export function totalsLine(bundles: BundleOutcome[], counts: Array<Counted | null> | undefined, elapsedMs: number, verb: string): string {
  const files = bundles.reduce((n, b) => n + b.files, 0);
  const bytes = bundles.reduce((n, b) => n + b.bytes, 0);
  const known = counts?.filter((c): c is Counted => c !== null) ?? [];
  const data = known.length ? `${known.reduce((n, c) => n + c.entries, 0)} entries, ${formatBytes(known.reduce((n, c) => n + c.dataBytes, 0))} of data; ` : '';
  const rate = elapsedMs > 0 ? `, ${formatBytes(Math.round((bytes * 1000) / elapsedMs))}/s` : '';
  return `Total        ${data}${files} set files ${verb}, ${formatBytes(bytes)}, in ${formatDuration(elapsedMs)}${rate}`;
}

/** A plain table: columns padded to their widest cell; `right` columns aligned right (numbers). */
export function formatTable(header: string[], rows: string[][], right: number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const errorText = (o: BundleOutcome) => (o.error ? `${o.error.code} ${o.error.message}` : '');

/** One line per ended bundle: done with its counts, else its state and error. */
export function endLine(o: BundleOutcome): string {
  return o.state === 'done' ? `done    ${o.bundleName}  ${o.files} files, ${formatBytes(o.bytes)}` : `${o.state.padEnd(7)} ${o.bundleName}  ${errorText(o)}`;
}

/** The bundle / state / set files / set bytes / error table; `label` names a bundle (a restore shows its mapping). */
export function formatOutcomes(bundles: BundleOutcome[], label: (o: BundleOutcome) => string = (o) => o.bundleName): string {
  const rows = bundles.map((b) => [label(b), b.state, String(b.files), formatBytes(b.bytes), errorText(b)]);
  return formatTable(['bundle', 'state', 'set files', 'set bytes', 'error'], rows, [2, 3]);
}

/**
 * The bundle table with what each holds: entries and data bytes (its index),
 * the set files and bytes handed over, and for an increment the files new,
 * changed, deleted, touched and unmodified since the base.
 */
export function formatCountedOutcomes(
  bundles: BundleOutcome[],
  counts: Array<Counted | null>,
  label: (o: BundleOutcome) => string = (o) => o.bundleName,
): string {
  const inc = counts.some((c) => c?.increment);
  const header = [
    'bundle',
    'state',
    'entries',
    'data',
    'set files',
    'set bytes',
    ...(inc ? ['new', 'changed', 'deleted', 'touched', 'unmodified'] : []),
    'error',
  ];
  const rows = bundles.map((b, i) => {
    const c = counts[i];
    const n = c?.increment;
    return [
      label(b),
      b.state,
      c ? String(c.entries) : '-',
      c ? formatBytes(c.dataBytes) : '-',
      String(b.files),
      formatBytes(b.bytes),
      ...(inc ? (n ? [n.new, n.changed, n.deleted, n.touched, n.unmodified].map(String) : ['-', '-', '-', '-', '-']) : []),
      errorText(b),
    ];
  });
  return formatTable(
    header,
    rows,
    [...Array(header.length - 3).keys()].map((i) => i + 2),
  );
}

/** The per-bundle table, the totals, and where to look next. */
export function formatBackupResult(r: BackupRunResult & { counts?: Array<Counted | null> }, elapsedMs: number): string {
  const lines = [
    r.counts ? formatCountedOutcomes(r.bundles, r.counts) : formatOutcomes(r.bundles),
    '',
    totalsLine(r.bundles, r.counts, elapsedMs, 'handed over'),
  ];
  if (r.error) lines.push(`Session failed: ${r.error.code} ${r.error.message}`);
  if (r.interrupted) lines.push('Interrupted: the set is incomplete.');
  if (r.endedElsewhere) lines.push(`The session was ${r.endedElsewhere}: the set is incomplete.`);
  lines.push(`Backup set   ${r.out}${r.kind === 'incremental' ? ' (incremental)' : ''}`);
  if (r.base) lines.push(`Base set     ${r.base}`);
  lines.push(`Session      ${r.sessionId}`, `Temporal UI  ${r.uiUrl}`);
  return lines.join('\n');
}

/** The per-bundle table and where to look next; a chain lists each set's session. */
export function formatRestoreResult(r: RestoreRunResult & { counts?: Array<Counted | null> }, elapsedMs: number): string {
  const label = (b: BundleOutcome) => (r.map[b.bundleName] ? `${b.bundleName} → ${r.map[b.bundleName]}` : b.bundleName);
  const lines = [
    r.counts ? formatCountedOutcomes(r.bundles, r.counts, label) : formatOutcomes(r.bundles, label),
    '',
    totalsLine(r.bundles, r.counts, elapsedMs, 'written'),
  ];
  if (r.error) lines.push(`Session failed: ${r.error.code} ${r.error.message}`);
  if (r.interrupted) lines.push('Interrupted: the session was released; bundles not done were not restored.');
  if (r.incomplete) lines.push(`Warning: ${r.incomplete}`);
  if (r.sets.length > 1) {
    lines.push(`Backup set   ${r.from}, an increment: restored as a chain of ${r.sets.length} sets, oldest first`, `Restored to  ${restoredOnto(r)}`);
    for (const [i, set] of r.sets.entries()) {
      lines.push(
        `  ${i + 1}. ${set.from}${set.error ? `  (session failed: ${set.error.code} ${set.error.message})` : ''}`,
        `     Session      ${set.sessionId}`,
        `     Temporal UI  ${set.uiUrl}`,
      );
    }
    return lines.join('\n');
  }
  lines.push(`Backup set   ${r.from}`, `Restored to  ${restoredOnto(r)}`, `Session      ${r.sessionId}`, `Temporal UI  ${r.uiUrl}`);
  return lines.join('\n');
}

/** Where a restore goes: the data root, the named device, or the device of the task queue. */
export function restoredOnto(r: { to?: string; device?: string; taskQueue: string }): string {
  return (
    r.to ??
    (r.device ? `device ${r.device} (task queue ${r.taskQueue}, its worker on ${deviceTaskQueue(r.device)})` : `the device of task queue ${r.taskQueue}`)
  );
}

/** `restore --dry-run`: what each bundle would restore, and whether it replaces data there now. */
export function formatRestorePlan(p: { from: string; to?: string; bundles: PlannedBundle[]; incomplete?: string }): string {
  const lines = [`Dry run: nothing was written. Restoring ${p.from} onto ${p.to ?? 'the device'} would restore:`];
  for (const b of p.bundles) {
    const into = b.target !== b.bundleName ? ` → ${b.target}` : '';
    const sets = b.sets.length > 1 ? `, from ${b.sets.length} sets` : '';
    lines.push(`  ${b.bundleName}${into}  ${b.entries} entries, ${formatBytes(b.bytes)}${sets}${b.replacesData ? '  REPLACES the data there now' : ''}`);
  }
  if (p.bundles.some((b) => b.replacesData)) lines.push('Data that is there now is replaced only with --force.');
  if (p.incomplete) lines.push(`Warning: ${p.incomplete}`);
  return lines.join('\n');
}
