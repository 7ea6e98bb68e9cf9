/**
 * restic's `backup --json` lines, as ohbackup reports them: the status lines
 * while it runs (restic prints RESTIC_PROGRESS_FPS of them a second) and the
 * summary at the end (what was added to the repository against what was
 * read: the deduplication of this store).
 */

export interface StoreProgress {
  /** 0..1, restic's bytes_done / total_bytes. */
  percent: number;
  bytesDone: number;
  totalBytes: number;
  filesDone: number;
  totalFiles: number;
  secondsElapsed: number;
  /** restic's estimate; undefined until it has one. */
  secondsRemaining?: number;
}

export interface StoreSummary {
  snapshotId: string;
  /** Bytes read from the staged set. */
  bytesProcessed: number;
  filesProcessed: number;
  /** Bytes new to the repository before / after compression: what deduplication left to store. */
  dataAdded: number;
  dataAddedPacked: number;
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  seconds: number;
}

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

export function parseStatus(m: Record<string, unknown>): StoreProgress | undefined {
  if (m.message_type !== 'status') return undefined;
  return {
    percent: num(m.percent_done),
    bytesDone: num(m.bytes_done),
    totalBytes: num(m.total_bytes),
    filesDone: num(m.files_done),
    totalFiles: num(m.total_files),
    secondsElapsed: num(m.seconds_elapsed),
    ...(typeof m.seconds_remaining === 'number' ? { secondsRemaining: m.seconds_remaining } : {}),
  };
}

export function parseSummary(m: Record<string, unknown>): StoreSummary | undefined {
  if (m.message_type !== 'summary' || typeof m.snapshot_id !== 'string') return undefined;
  return {
    snapshotId: m.snapshot_id,
    bytesProcessed: num(m.total_bytes_processed),
    filesProcessed: num(m.total_files_processed),
    dataAdded: num(m.data_added),
    dataAddedPacked: num(m.data_added_packed),
    filesNew: num(m.files_new),
    filesChanged: num(m.files_changed),
    filesUnmodified: num(m.files_unmodified),
    seconds: num(m.total_duration),
  };
}
