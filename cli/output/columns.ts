/** The progress columns of backup and restore runs: what their bars and lines show (cli/output/progress.ts draws them). */
import type { BackupProgressEvent } from '../../client/runs/runBackup.js';
import type { RestoreProgressEvent } from '../../client/runs/runRestore.js';
import type { ProgressColumns } from './progress.js';
import { formatBytes, restoredOnto } from './results.js';

function backupStartSuffix(e: Extract<BackupProgressEvent, { type: 'start' }>): string {
  if (e.attached) return ' (re-attached: completing its set)';
  if (e.base) return ` (incremental, base ${e.base})`;
  return e.kind === 'incremental' ? ' (incremental session, in full)' : '';
}

/** A bar follows the bytes handed over against the capability file's estimate; it completes when the bundle ends. */
export const backupColumns: ProgressColumns<BackupProgressEvent> = {
  barFormat: ' {bundle} |{bar}| {files} files  {size}  {status}',
  startLine: (e, onBar) =>
    !onBar
      ? `Session ${e.sessionId}: backing up ${e.bundles.join(', ')}${backupStartSuffix(e)}`
      : e.kind === 'incremental'
        ? `Session ${e.sessionId}${backupStartSuffix(e)}`
        : undefined,
  beginLine: (e) => `begin   ${e.bundleName}`,
  begin: (e) => ({ total: Math.max(1, e.estimatedBytes ?? 1), fields: { files: 0, size: formatBytes(0), status: '' } }),
  file: (e, total) => ({ value: Math.min(e.bytes, Math.floor(total * 0.99)), fields: { files: e.files, size: formatBytes(e.bytes) } }),
  end: (o, total) => ({
    value: total,
    fields: { files: o.files, size: formatBytes(o.bytes), status: o.state === 'done' ? 'done' : `${o.state} ${o.error?.code ?? ''}` },
  }),
};

function restoreStartLine(e: Extract<RestoreProgressEvent, { type: 'start' }>): string {
  const set = e.steps && e.steps > 1 && e.from ? ` from ${e.from} (set ${e.step} of ${e.steps})` : '';
  return `Session ${e.sessionId}: restoring ${e.bundles.join(', ')}${set} onto ${restoredOnto(e)}`;
}

/** A bar follows the files written against the bundle's total. */
export const restoreColumns: ProgressColumns<RestoreProgressEvent> = {
  barFormat: ' {bundle} |{bar}| {value}/{total} files  {status}',
  startLine: (e) => restoreStartLine(e),
  beginLine: (e) => `begin   ${e.bundleName}  ${e.total} files to write`,
  begin: (e) => ({ total: Math.max(1, e.total), fields: { status: '' } }),
  file: (e) => ({ value: e.files }),
  end: (o, total) => ({
    value: o.state === 'done' ? total : o.files,
    fields: { status: o.state === 'done' ? `done, ${formatBytes(o.bytes)}` : `${o.state} ${o.error?.code ?? ''}` },
  }),
};
