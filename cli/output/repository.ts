/** Repository results as plain text: snapshots, check, forget, diff, and a store's figures. */
import type { CheckResult, DiffResult, ForgetResult, SnapshotInfo, StoreProgress, StoreSummary } from '../../engine/repository/index.js';
import { formatBytes, formatTable } from './results.js';

const when = (iso: string) => iso.replace(/\.\d+/, '').replace('T', ' ');

export function formatSnapshots(list: SnapshotInfo[], repository: string): string {
  if (!list.length) return `No ohbackup snapshots in ${repository}.`;
  const rows = list.map((s) => [
    s.shortId,
    when(s.time),
    s.device,
    s.kind === 'incremental' ? (s.base ? 'increment' : 'incremental') : 'full',
    s.bundles.join(',') + (s.partial ? ' (partial)' : ''),
    s.size !== undefined ? formatBytes(s.size) : '',
    s.base ? s.base.id.slice(0, 8) : '',
  ]);
  return `${formatTable(['id', 'time', 'device', 'kind', 'bundles', 'size', 'base'], rows, [5])}\n${list.length} snapshot${list.length === 1 ? '' : 's'} in ${repository}`;
}

/** restic's upload figures while storing: percent, bytes, rate. */
export function storeStatus(p: StoreProgress): string {
  const rate = p.secondsElapsed > 0 ? p.bytesDone / p.secondsElapsed : 0;
  return `${Math.floor(p.percent * 100)}%  ${formatBytes(p.bytesDone)}/${formatBytes(p.totalBytes)}  ${formatBytes(rate)}/s`;
}

/** What a store added against what it read: the deduplication of this backup. */
export function storeLine(s: StoreSummary): string {
  const dedup = s.bytesProcessed > 0 ? (1 - s.dataAdded / s.bytesProcessed) * 100 : 0;
  const rate = s.seconds > 0 ? s.bytesProcessed / s.seconds : 0;
  return `${formatBytes(s.bytesProcessed)} read, ${formatBytes(s.dataAdded)} added (${formatBytes(s.dataAddedPacked)} packed), ${dedup.toFixed(1)}% deduplicated, ${formatBytes(rate)}/s`;
}

export function formatCheck(r: CheckResult, repository: string): string {
  const lines: string[] = [];
  lines.push(`restic check: ${r.restic.ok ? 'no errors' : `${r.restic.errors} error${r.restic.errors === 1 ? '' : 's'}`}`);
  for (const m of r.restic.messages.slice(0, 10)) lines.push(`  ${m}`);
  if (r.restic.brokenPacks.length) lines.push(`  damaged packs: ${r.restic.brokenPacks.join(', ')}`);
  if (r.damaged.length) {
    lines.push('Damaged:');
    for (const d of r.damaged) lines.push(`  snapshot ${d.snapshot.slice(0, 8)}${d.bundleName ? ` bundle ${d.bundleName}` : ''}: ${d.problem}`);
  }
  lines.push(`${r.ok ? 'Clean' : 'DAMAGED'}: ${repository}, ${r.snapshotsChecked} snapshot${r.snapshotsChecked === 1 ? '' : 's'} checked`);
  return lines.join('\n');
}

export function formatForget(r: ForgetResult, repository: string): string {
  const rows = r.decisions.map((d) => [
    d.snapshot.shortId,
    when(d.snapshot.time),
    d.snapshot.device,
    d.keep ? 'keep' : r.dryRun ? 'would go' : 'forgotten',
    d.reasons.join('; '),
  ]);
  const lines = [rows.length ? formatTable(['id', 'time', 'device', 'decision', 'why'], rows) : `No ohbackup snapshots in ${repository}.`];
  const n = r.forgotten.length;
  if (r.dryRun) lines.push(`Dry run: ${n} snapshot${n === 1 ? '' : 's'} would be forgotten; nothing was changed.`);
  else lines.push(`${n} snapshot${n === 1 ? '' : 's'} forgotten${r.pruned ? ', unreferenced data pruned' : ''}.`);
  return lines.join('\n');
}

export function formatDiff(r: DiffResult): string {
  const lines = [`${r.a.shortId} (${when(r.a.time)}) → ${r.b.shortId} (${when(r.b.time)}), device ${r.a.device}`];
  for (const b of r.bundles) {
    const only = b.only === 'a' ? ` (only in ${r.a.shortId})` : b.only === 'b' ? ` (only in ${r.b.shortId})` : '';
    lines.push(`${b.bundleName}${only}: ${b.new.length} new, ${b.changed.length} changed, ${b.deleted.length} deleted, ${b.touched.length} touched`);
    const list = (mark: string, paths: string[]) => paths.slice(0, 50).forEach((p) => lines.push(`  ${mark} ${p}`));
    list('+', b.new);
    list('M', b.changed);
    list('-', b.deleted);
    list('T', b.touched);
  }
  return lines.join('\n');
}
