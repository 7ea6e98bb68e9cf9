/**
 * What travels between the tool, the session workflow, the bundle children and
 * the activities: session inputs, the numbered event stream, and outcomes.
 * Pure types and constants, safe for workflow code.
 */
import type { ErrorInfo } from './errors.js';

export type SessionKind = 'backup' | 'restore' | 'incremental';

/** One appended bundle, as the session keeps it. */
export interface BundleRequest {
  bundleName: string;
  /** The `infos[i]` string the tool passed with it, if any. */
  info?: string;
  /** Higher first; equal priority keeps append order (api.md §2). */
  priority: number;
  /** Order of appending, across appendBundles calls. */
  order: number;
  /** Restore: the device bundle that receives this bundle's data (app_mapping_relation); default the same name. */
  targetBundle?: string;
  /** Restore: bundles (of this session) that must end before this one starts. */
  restoreDeps?: string[];
  /** Known before it starts that it cannot run (e.g. absent from the capability file). */
  rejected?: ErrorInfo;
  /** Restore: how to create the bundle on a device that lacks it (from the capability file). */
  install?: BundleInstall;
  /** Incremental: the previous backup's time (epoch seconds; 0 = full). */
  lastIncrementalTime?: number;
  /** Incremental: where the tool left a copy of the previous backup's manifest (absent = full). */
  baseManifestPath?: string;
  /** BackupParams.parameters: a JSON string handed to the bundle's hooks. */
  parameters?: string;
  /** Restore: keep the data/ tree it replaces as `data.before-<sessionId>` beside it, instead of removing it. */
  keepPrevious?: boolean;
  /** Backup: the hooks the device bundle declares, checked when it was appended; its session reports its begin. */
  hooks?: string[];
}

/** What a capability file says of a bundle: enough to create it on a device that lacks it. */
export interface BundleInstall {
  versionCode: number;
  versionName: string;
  appIndex: number;
  allowToBackupRestore: boolean;
  fullBackupOnly: boolean;
  restoreDeps: string;
  supportScene: string;
  extraInfo: unknown;
}

/** Event bodies as produced by children and activities; the session numbers them. */
export type EventBody =
  | { type: 'bundleBegin'; bundleName: string; error?: ErrorInfo }
  | {
      type: 'fileReady';
      bundleName: string;
      /** Position of this file in the bundle's hand-over order; used to drop repeats after a retry. */
      fileIndex: number;
      uri: string;
      size: number;
      /** Where the worker left the file (backup) or made the target (restore); the tool opens it and passes the fd. */
      path: string;
      /** Restore targets are opened for writing. */
      writable?: boolean;
      /** Incremental: the bundle's new full manifest; the tool gets an fd of it with every file. */
      manifestPath?: string;
      /** Backup: when the worker handed the file over (epoch ms, the worker's clock); the tool sees it as `file.readyAt`. */
      readyAt?: number;
      error?: ErrorInfo;
    }
  /** `paused`: the bundle waits at send rate 0 (the session's details say so); its next file or end clears it. */
  | { type: 'process'; bundleName: string; process: string; paused?: boolean }
  | { type: 'resultReport'; bundleName: string; result: string }
  | { type: 'bundleEnd'; bundleName: string; error?: ErrorInfo; cancelled?: boolean }
  | { type: 'allBundlesEnd'; error?: ErrorInfo }
  | { type: 'sizeReport'; report: string };

export type SessionEvent = EventBody & { seq: number };

export type BundleState = 'pending' | 'running' | 'done' | 'failed' | 'cancelled' | 'notStarted';

export interface BundleOutcome {
  bundleName: string;
  state: BundleState;
  error?: ErrorInfo;
  files: number;
  bytes: number;
}

/** Who ended a session: its own tool's release, another client (`ohbackup release`, the UI's cancel), or the session itself when its tool went silent. */
export type SessionEndedBy = 'tool' | 'another client' | 'abandoned';

/** What the tool had acknowledged of one bundle when its session was abandoned. */
export interface AcknowledgedFiles {
  bundleName: string;
  files: number;
  bytes: number;
  /** The uris of those files, in hand-over order (the first ACKNOWLEDGED_URIS_NAMED; `files` counts them all). */
  uris: string[];
  /** The tool had acknowledged the bundle's onBundleEnd. */
  ended: boolean;
}

export interface SessionAbandoned {
  /** E.g. "tool silent for 30 s". */
  reason: string;
  /** When the session noticed (ISO 8601, workflow time). */
  at: string;
  acknowledgedFiles: AcknowledgedFiles[];
}

/**
 * How a session ended (its OhbackupOutcome search attribute, metrics, logs):
 * done / partial / failed / cancelled from its bundles (sessionOutcome in
 * rules.ts); 'abandoned' when its tool went away without releasing it.
 */
export type SessionOutcome = 'done' | 'partial' | 'failed' | 'cancelled' | 'abandoned';

export interface SessionResult {
  sessionId: string;
  kind: SessionKind;
  outcome: SessionOutcome;
  bundles: BundleOutcome[];
  /** Every bundle's outcome as a Markdown table: what the Temporal UI shows of the session once it has closed. */
  summaryMarkdown: string;
  /** Events the tool had not acknowledged when the session completed, so a releasing tool can drain them. */
  trailingEvents: SessionEvent[];
  endedBy?: SessionEndedBy;
  /** Set when the session ended by itself because its tool fell silent past its tool timeout. */
  abandoned?: SessionAbandoned;
}

/** How a completed session ended, in words: "released by its tool", "released by another client", "abandoned by its tool (tool silent for 30 s …)". */
export function describeEnd(result: Pick<SessionResult, 'endedBy' | 'abandoned'>): string {
  if (result.endedBy === 'abandoned') return `abandoned by its tool (${result.abandoned?.reason ?? 'its tool fell silent'})`;
  return result.endedBy === 'another client' ? 'released by another client' : 'released by its tool';
}

export interface EventsPage {
  events: SessionEvent[];
  acked: number;
  lastSeq: number;
  released: boolean;
  /** The session's tool timeout: a tool silent this long abandons it (the pump acknowledges at least every third of it). */
  toolTimeoutMs?: number;
  /** When the session last heard from its tool (epoch ms, workflow time). */
  toolSeenAt?: number;
  /** The session waits for the tool's acknowledgement (to continue as new): what was delivered is acknowledged at once. */
  ackNow?: boolean;
}

export const DEFAULTS = {
  /** Bundles run at once per session (the reference's limit). */
  maxConcurrentBundles: 3,
  /** A bundle's deadline unless updateTimer says otherwise. */
  bundleTimeoutMs: 15 * 60 * 1000,
  maxTimeoutMs: 14_400_000,
  sendRate: 60,
  maxSendRate: 800,
  /** How long a bundle with files waits for the tool to have seen its onBundleBegin before handing over (a rate set there then paces the first file). */
  toolBegunWaitMs: 2000,
  /** A session whose tool is silent this long ends by itself (long enough for a tool to restart and attach). */
  toolTimeoutMs: 5 * 60 * 1000,
} as const;

/** How many acknowledged uris per bundle an abandoned session's result names (it counts them all): bounds the carried state. */
export const ACKNOWLEDGED_URIS_NAMED = 100;

/** The child workflow of a bundle: derived from the session ID so tools and the UI can find it. */
export function bundleWorkflowId(sessionId: string, bundleName: string): string {
  return `${sessionId}/${bundleName}`;
}

/** The `onProcess` payload of api.md §8. */
export function processJson(resultInfo: string, nowMs: number): string {
  return JSON.stringify({ processResult: { timeInfo: String(Math.floor(nowMs / 1000)), resultInfo } });
}
