/**
 * Every signal, query and update of ohbackup's workflows, with their payload
 * types: the one module that workflows, activities and the tool library all
 * import (as in Temporal's samples' `shared.ts`), so no side imports another's
 * implementation to talk to it.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ErrorInfo } from './errors.js';
import type { HookName } from './device.js';
import type { ScheduledBackupRequest, ScheduledBackupSummary } from './scheduledBackup.js';
import type { DeviceRecord, DeviceRunRequest, DeviceRunResult } from './deviceRun.js';
import type { BundleOutcome, BundleRequest, EventBody, EventsPage, SessionKind, SessionResult } from './session.js';

// ---- The session workflow (one per session) ----

export interface AppendRequest {
  bundles: Array<Omit<BundleRequest, 'order' | 'priority'> & { priority?: number }>;
}

/** A file the tool names for restore (api.md FileMeta). */
export interface FileMetaInput {
  bundleName: string;
  uri: string;
}

export const appendBundlesUpdate = defineUpdate<void, [AppendRequest]>('appendBundles');
/** Who asks for the release: `by` absent, the session's own tool; `ohbackup release` and other clients say so (the tool then reports it). */
export interface ReleaseRequest {
  by?: 'another client';
}
export const releaseUpdate = defineUpdate<void, [ReleaseRequest]>('release');
export const cancelBundleUpdate = defineUpdate<number, [string]>('cancelBundle');
/** getBackupDataSize: start a size scan whose reports arrive as onBackupSizeReport. */
export const getBackupDataSizeUpdate = defineUpdate<void, [{ precise: boolean; dataList: Array<{ bundleName: string; lastIncrementalTime: number }> }]>(
  'getBackupDataSize',
);
/** Restore: make a writable target for one file of a bundle; the answer comes as onFileReady. */
export const getFileHandleUpdate = defineUpdate<void, [FileMetaInput]>('getFileHandle');
/**
 * Restore: getFileHandle for several files at once (the tool library gathers the calls made together), one
 * update instead of one each. The answer is one entry per file, in order: null when asked, or why it was refused.
 */
export const getFileHandlesUpdate = defineUpdate<Array<ErrorInfo | null>, [FileMetaInput[]]>('getFileHandles');
/** The most files one getFileHandles update names. */
export const MAX_FILE_HANDLES_PER_UPDATE = 64;
/** Restore: the bundle's files are all written (uri ''); the bundle then unpacks and applies them. */
export const publishFileUpdate = defineUpdate<void, [FileMetaInput]>('publishFile');
export const ackSignal = defineSignal<[number]>('ack');
/**
 * The tool could not be given a file of this bundle (too many fds open, or the
 * file could not be opened) and stopped its delivery there: the bundle ends
 * with `error`, and its outcome counts only what the tool got.
 */
export const deliveryStoppedSignal = defineSignal<[{ bundleName: string; error: ErrorInfo; files: number; bytes: number }]>('deliveryStopped');
/** Children and activities report bundle events through this signal. */
export const bundleEventsSignal = defineSignal<[EventBody[]]>('bundleEvents');
export const eventsQuery = defineQuery<EventsPage, [number, number?]>('events');
export const outcomesQuery = defineQuery<BundleOutcome[]>('outcomes');

// ---- Bundle children (one per bundle) ----

/** updateTimer: re-arms the bundle's deadline to `ms` from now. */
export const updateTimerSignal = defineSignal<[number]>('updateTimer');
/** updateSendRate: files per second handed to the tool; 0 pauses. */
export const updateSendRateSignal = defineSignal<[number]>('updateSendRate');
/** The hand-over activity reads the current rate through this query. */
export const sendRateQuery = defineQuery<number>('sendRate');
/**
 * Whether the tool has run the bundle's onBundleBegin (false until it has), then the bundle's send rate, so the
 * hand-over needs no query of its own for it. The tool says so by asking it with `begun` true, once any rate it set
 * in onBundleBegin has landed (updateSendRate): a query, not a signal, so it costs no history and does not wake the
 * bundle's workflow. The mark is kept in memory only, and only this query reads it: no command depends on it. The
 * first mark also reaches the worker process that holds the bundle (the ohbackupToolBegun sink), where the pack
 * activity waits for it (activities/toolBegunMarks.ts); an activity in another process asks this query.
 */
export const toolBegunQuery = defineQuery<number | false, [begun?: boolean]>('toolBegun');
/** Restore: the tool has written every file of the bundle (publishFile with uri ''). */
export const publishSignal = defineSignal('publish');

// ---- The per-device claims workflow ----

export interface ClaimRequest {
  sessionWorkflowId: string;
  bundleNames: string[];
}

export interface ClaimAnswer {
  /** The requested bundles another running session holds (the rest are now the requester's). */
  held: Array<{ bundleName: string; sessionWorkflowId: string; /** When that session claimed it (epoch ms, workflow time). */ since?: number }>;
}

export const claimBundlesUpdate = defineUpdate<ClaimAnswer, [ClaimRequest]>('claimBundles');
/** Releases every claim of a session; answers how many it held. */
export const releaseBundleClaimsUpdate = defineUpdate<number, [string]>('releaseBundleClaims');
export const bundleClaimsQuery = defineQuery<Record<string, string>>('claims');

// ---- The workflows other sides start by name ----
// Their signatures live here so the tool and the activities start them without importing workflow code
// (which imports the activities' types back: a circle). Each workflow is declared with its type below.

/** Who started a session and on what, for what the UI shows of it (never secrets). */
export interface SessionOrigin {
  host: string;
  user: string;
  /** What the session works on, in words: e.g. the backup set folder it writes, or restores from. */
  target?: string;
}

/** What the tool gives a session workflow when it starts it. */
export interface SessionStart {
  origin?: SessionOrigin;
  sessionId: string;
  kind: SessionKind;
  maxConcurrentBundles?: number;
  /** Backup: the send rate each bundle starts at (default DEFAULTS.sendRate); updateSendRate changes it per bundle. */
  sendRate?: number;
  /** Keep the ohbackup search attributes up to date (they must be registered on the namespace). */
  searchAttributes?: boolean;
  /**
   * A session that names a device: that device's own task queue. Its bundle
   * children and every activity that touches the device's files run there;
   * the session workflow stays on its own queue. Absent: everything runs on
   * the session's queue.
   */
  deviceTaskQueue?: string;
  /** A tool silent this long (no acknowledgement) abandons the session, which then ends by itself; default DEFAULTS.toolTimeoutMs. */
  toolTimeoutMs?: number;
}
export type SessionWorkflow = (input: SessionStart) => Promise<SessionResult>;

export interface BundleClaimInput {
  deviceKey: string;
  /** Set only by continue-as-new: bundle name → workflow ID of the session holding it. */
  claims?: Record<string, string>;
  /** Set only by continue-as-new: bundle name → when its claim was made (epoch ms). */
  since?: Record<string, number>;
}
export type BundleClaimWorkflow = (input: BundleClaimInput) => Promise<void>;

/** The capability file of the device (or of the listed bundles); answers the file's path on the device. */
export type CapabilitiesWorkflow = (input: { only?: Array<{ bundleName: string; lastIncrementalTime: number }> }) => Promise<string>;
export type BundleHookWorkflow = (input: { bundleName: string; hook: HookName; input?: string; timeoutMs: number }) => Promise<string>;
export type CleanBundleTempWorkflow = (input: { bundleName: string }) => Promise<boolean>;
export type ScheduledBackupWorkflow = (request: ScheduledBackupRequest) => Promise<ScheduledBackupSummary>;

// ---- Device-side runs (common/deviceRun.ts) ----
export type DeviceRunWorkflow = (request: DeviceRunRequest) => Promise<DeviceRunResult>;
/** A device's worker (re)started: its record now says so (the record keeps it in its memo, readable with no worker). */
export const deviceRecordSignal = defineSignal<[DeviceRecord]>('deviceRecord');
export type DeviceRecordWorkflow = (record: DeviceRecord, seen?: number) => Promise<void>;
