/**
 * Device-side runs: a backup, restore or repository query run entirely by
 * one device's worker (the tool's part included), into or out of a repository
 * the device names by alias (config/repository.ts resolveDeviceAlias). The operator's command
 * starts `deviceRunWorkflow` on the device's task queue and follows it; no
 * byte of the data and no repository credential passes through it or through
 * Temporal. Pure types and constants, safe for workflow code.
 */
import type { ErrorInfo } from './errors.js';
import type { BundleOutcome, BundleState } from './session.js';
import type { SnapshotView } from './snapshot.js';

export const DEVICE_RUN_WORKFLOW = 'deviceRunWorkflow';
export const DEVICE_RECORD_WORKFLOW = 'deviceRecordWorkflow';
/** The memo key under which a device's record workflow keeps its DeviceRecord. */
export const DEVICE_RECORD_MEMO = 'ohbackupDevice';
/** The ApplicationFailure type of a run that did nothing (no bundle done); its details hold the run's result. */
export const DEVICE_RUN_FAILED = 'OhbackupDeviceRunFailed';
/** The ApplicationFailure type of a run whose setup failed on the device (no such alias, nothing to back up …): not retried. */
export const DEVICE_RUN_SETUP = 'OhbackupDeviceRunSetup';

export type DeviceRunKind = 'backup' | 'restore' | DeviceQueryKind;
/** The repository commands a device's worker answers (`--on-device`): its answer is the repository library's own result. */
export type DeviceQueryKind = 'snapshots' | 'check' | 'forget' | 'diff';
export const DEVICE_QUERY_KINDS: readonly DeviceQueryKind[] = ['snapshots', 'check', 'forget', 'diff'];

export interface DeviceRunRequest {
  kind: DeviceRunKind;
  /** The device whose worker runs it (and, for a backup, whose data it is). */
  device: string;
  /** The repository's alias on the device: a name, never a repository string or a secret. */
  repository: string;
  bundles?: string[];
  /** Backup: files per second handed over per bundle. */
  rate?: number;
  /** Backup: an incremental session (manifests kept), in full unless `base`. */
  incremental?: boolean;
  /** Backup: an increment of this snapshot (ID, prefix, `latest`). */
  base?: string;
  /** Restore: the snapshot (ID, prefix, `latest`); an increment brings its chain. */
  snapshot?: string;
  /** Restore: whose snapshot `latest` means (default the device itself). Snapshots, forget: only this device's. */
  fromDevice?: string;
  /** Snapshots: only those storing this bundle. */
  bundle?: string;
  map?: Record<string, string>;
  force?: boolean;
  keepPrevious?: boolean;
  /** Check: read back and hash every byte (restic check --read-data, and every bundle's entries against its index). */
  readData?: boolean;
  /** Check: read back this part of the packs (restic's n%, n/t or a size). */
  readDataSubset?: string;
  /** Forget: the keep policy (at least one), per device; chains kept whole. */
  keep?: { keepLast?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number };
  /** Forget: then remove the data no snapshot needs. */
  prune?: boolean;
  /** Forget: change nothing, only decide. */
  dryRun?: boolean;
  /** Diff: the two snapshots (ID, prefix, `latest`, session:ID). */
  a?: string;
  b?: string;
}

/** One bundle as a run's progress shows it. */
export interface DeviceRunBundle {
  name: string;
  state: 'pending' | 'running' | BundleState;
  files: number;
  bytes: number;
  /** Backup: the capability file's estimate of its bytes; restore: the files to write. */
  total?: number;
  code?: number;
}

/** What the run's activity heartbeats (small: at most MAX_PROGRESS_BUNDLES bundles listed). */
export interface DeviceRunProgress {
  phase: 'starting' | 'session' | 'storing' | 'reading' | 'query';
  /** The session of this attempt, once started (a retry releases it). */
  sessionId?: string;
  /** A restore session has started writing the device's data (a retry may replace it). */
  wrote?: boolean;
  bundles: DeviceRunBundle[];
  files: number;
  bytes: number;
  /** Storing: restic's own percent done. */
  percent?: number;
}

export const MAX_PROGRESS_BUNDLES = 64;

/** A snapshot as a device run reports it (engine/repository's SnapshotInfo, without its raw tags). */
export type DeviceRunSnapshot = SnapshotView;

export interface DeviceRunResult {
  kind: DeviceRunKind;
  device: string;
  repository: string;
  outcome: 'done' | 'partial' | 'failed';
  /** The (last) session run. */
  sessionId?: string;
  bundles: BundleOutcome[];
  files: number;
  bytes: number;
  /** Backup: the snapshot made; restore: the chain restored, root first. */
  snapshot?: DeviceRunSnapshot;
  snapshots?: DeviceRunSnapshot[];
  baseSnapshot?: DeviceRunSnapshot;
  /** Backup: what storing added to the repository. */
  store?: { filesNew: number; filesChanged: number; dataAdded: number; totalBytes: number };
  /**
   * A query's answer, as JSON: what the repository library returns for it on
   * the device (engine/repository: SnapshotInfo[], CheckResult, ForgetResult,
   * DiffResult), which the command prints as it prints a local one.
   */
  answer?: unknown;
  /** A query's answer in a few words (the run's details in the UI); `ok: false` when a check found damage. */
  summary?: { text: string; ok: boolean };
  error?: ErrorInfo;
  /** Which attempt of the run's activity finished it (2 and more: a worker died or restarted mid-run). */
  attempt: number;
}

/** What each device worker keeps in its record (`ohbackup devices`). */
export interface DeviceRecord {
  device: string;
  taskQueue: string;
  version: string;
  /** Repository aliases configured on the device: names only. */
  repositories: string[];
  /** When the worker (re)started, ISO 8601. */
  startedAt: string;
  identity: string;
}

/** The workflow ID of a device's record. */
export function deviceRecordId(device: string): string {
  return `ohbackup-device-record-${device}`;
}
