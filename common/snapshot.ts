/** What an ohbackup snapshot in a repository is: read from its restic tags (engine/repository/snapshotTags.ts), reported by device runs. */

export interface SnapshotMeta {
  device: string;
  sessionId: string;
  kind: 'backup' | 'incremental';
  /** Bundles stored completely. */
  bundles: string[];
  /** Some bundle of the session is not stored (failed or not started). */
  partial?: boolean;
  /** An increment's base: its snapshot ID (a hint: copies get new IDs) and its session (what resolves it). */
  base?: { id: string; sessionId: string };
}

/** A snapshot as it is listed and reported. */
export interface SnapshotView extends SnapshotMeta {
  id: string;
  shortId: string;
  /** The session's start (restic's snapshot time), ISO 8601. */
  time: string;
  /** Bytes of the snapshot's files (restic's total_bytes_processed), when restic recorded it. */
  size?: number;
  /** Bytes this snapshot added to the repository when it was made (restic's data_added). */
  dataAdded?: number;
}
