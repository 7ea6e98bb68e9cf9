/** The progress columns of backup and restore runs: what their bars and lines show (cli/output/progress.ts draws them). */
import type { BackupProgressEvent } from '../../client/runs/runBackup.js';
import type { RestoreProgressEvent } from '../../client/runs/runRestore.js';
import { sessionUiUrl } from '../../client/runs/setup.js';
import { temporalTarget } from '../../config/temporalConfig.js';
import type { ProgressColumns } from './progress.js';
import { formatBytes, restoredOnto } from './results.js';

function backupStartSuffix(e: Extract<BackupProgressEvent, { type: 'start' }>): string {
  if (e.attached) return ' (re-attached: completing its set)';
  if (e.base) return ` (incremental, base ${e.base})`;
  return e.kind === 'incremental' ? ' (incremental session, in full)' : '';
}

/** A bar follows the bytes handed over against the capability file's estimate; it completes when the bundle ends. */
export const backupColumns: ProgressColumns<BackupProgressEvent> = {
  startLine: (e) =>
    `Session ${e.sessionId}: backing up ${e.bundles.join(', ')}${backupStartSuffix(e)}\nTemporal UI  ${sessionUiUrl(temporalTarget().namespace, e.sessionId)}`,
  beginLine: (e) => `begin   ${e.bundleName}`,
  counts: 'bytes',
  begin: (e) => ({ files: 0, bytes: 0, ...(e.estimatedBytes ? { totalBytes: e.estimatedBytes } : {}) }),
  // The estimate is the capability file's: a bundle may hand over more; the bar stays short of full until it ends.
  file: (e, before) => ({
    ...before,
    files: e.files,
    bytes: e.bytes,
    ...(before.totalBytes !== undefined ? { totalBytes: Math.max(before.totalBytes, Math.ceil(e.bytes / 0.99)) } : {}),
  }),
  size: (a) => (a.totalBytes !== undefined ? `${formatBytes(a.bytes)} of ${formatBytes(a.totalBytes)}` : formatBytes(a.bytes)),
};

function restoreStartLine(e: Extract<RestoreProgressEvent, { type: 'start' }>): string {
  const set = e.steps && e.steps > 1 && e.from ? ` from ${e.from} (set ${e.step} of ${e.steps})` : '';
  return `Session ${e.sessionId}: restoring ${e.bundles.join(', ')}${set} onto ${restoredOnto(e)}\nTemporal UI  ${sessionUiUrl(temporalTarget().namespace, e.sessionId)}`;
}

/** A bar follows the files written against the bundle's total. */
export const restoreColumns: ProgressColumns<RestoreProgressEvent> = {
  startLine: restoreStartLine,
  beginLine: (e) => `begin   ${e.bundleName}  ${e.total} files to write`,
  counts: 'files',
  begin: (e) => ({ files: 0, bytes: 0, totalFiles: e.total }),
  file: (e, before) => ({ ...before, files: e.files, totalFiles: e.total }),
  size: (a) => (a.totalFiles !== undefined ? `${a.files} of ${a.totalFiles} files` : `${a.files} files`),
};
