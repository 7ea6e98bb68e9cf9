/**
 * A scheduled backup: what a Temporal Schedule's action hands to
 * `scheduledBackupWorkflow`, and what each run returns. Pure types and
 * constants, safe for workflow code.
 */
import type { ErrorInfo } from './errors.js';
import type { BundleOutcome } from './session.js';

/** The workflow type a schedule's action starts; `ohbackup schedule list` shows only schedules of it. */
export const SCHEDULED_BACKUP_WORKFLOW = 'scheduledBackupWorkflow';

/** The ApplicationFailure type of a run in which no bundle was backed up; its details hold the run's summary. */
export const SCHEDULED_BACKUP_FAILED = 'OhbackupScheduledBackupFailed';

/** The schedule's memo key: the request and how its times were given, for `schedule list`. */
export const SCHEDULE_MEMO_KEY = 'ohbackup';

export interface ScheduledBackupRequest {
  /** The destination folder (absolute, as the device's worker sees it): every run writes a new backup set in it. Or `repository`. */
  dest?: string;
  /**
   * Instead of `dest`: every run is a snapshot in this repository, named as
   * the worker resolves it (config/repository.ts): an alias NAME
   * (OHBACKUP_REPOSITORY_<NAME> in the worker's environment), `state`, or a
   * repository string without credentials. Never a password.
   */
  repository?: string;
  /** With `repository`: the keep policy applied after each run (prune at most once a day). */
  keep?: { keepLast?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number };
  /** With `incremental` and `repository`: a new full backup once the newest chain has this many increments. */
  fullEvery?: number;
  /** Each bundle's deadline in ms (updateTimer); default the session's 15 minutes. */
  bundleTimeoutMs?: number;
  /** Bundles to back up; none = every bundle the device reports as backup-able at run time. */
  bundles?: string[];
  /**
   * Each run is an increment of the newest complete incremental set in `dest`
   * (the first run, with none there, is a full backup that keeps manifests).
   * Without it, every run is a full backup.
   */
  incremental: boolean;
  /** Files per second handed over per bundle (updateSendRate); default the session's. */
  rate?: number;
}

export interface ScheduledBackupSummary {
  /** The backup set folder this run wrote (for a repository: `<repository>#<snapshot ID>`). */
  set: string;
  /** A repository run: the repository (no credentials), the snapshot made, what it added, and the keep policy's work. */
  repository?: {
    name: string;
    snapshot?: string;
    baseSnapshot?: string;
    bytesProcessed?: number;
    dataAdded?: number;
    forgotten?: string[];
    pruned?: boolean;
    /** Why storing or the keep policy failed (the backup's outcome says whether the session did). */
    problem?: string;
  };
  sessionId: string;
  uiUrl: string;
  kind: 'backup' | 'incremental';
  /** The base set, for an increment. */
  base?: string;
  bundles: BundleOutcome[];
  /** Files and bytes handed over, every bundle together. */
  files: number;
  bytes: number;
  /** How long the run took (ms); absent for a set an earlier attempt finished, and from older workers. */
  elapsedMs?: number;
  /** done: every bundle done; partial: some; failed: none, or the session failed. */
  outcome: 'done' | 'partial' | 'failed';
  /** The session's own failure, when it failed as a whole. */
  error?: ErrorInfo;
}

/** What the schedule's memo holds under SCHEDULE_MEMO_KEY. */
export interface ScheduleMemo {
  request: ScheduledBackupRequest;
  /** The times as given: `cron 0 2 * * *` or `every 24h`. */
  when: string;
}

/**
 * The set folder of one run: sortable by start time (UTC) and unique per run,
 * e.g. `20250102T020000Z-1a2b3c4d`.
 */
export function scheduledSetName(start: Date, runId: string): string {
  const stamp = start
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
  // The run ID's last digits: its first ones are a timestamp (UUIDv7), the same for runs close together.
  return `${stamp}-${runId.replace(/-/g, '').slice(-8)}`;
}
