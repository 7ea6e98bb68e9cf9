/**
 * The small rules more than one side applies, each in one place: what a
 * FileMeta uri may be, how a send rate is clamped, the longest deadline, which
 * hook a bundle's backup or restore runs, what a run's outcome is, and how a
 * reference code travels as a Temporal failure. Pure, safe for workflow code.
 */
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE_TYPE, errorInfo, type ErrorInfo } from './errors.js';
import { DEFAULTS, type BundleOutcome, type SessionOutcome } from './session.js';

/** The longest deadline updateTimer accepts (api.md §4): 4 hours. */
export const MAX_TIMEOUT_MS = DEFAULTS.maxTimeoutMs;

/** A FileMeta uri (api.md §2): only [0-9a-zA-Z_.], never "." or "..", so never a path. */
export const URI_PATTERN = /^[0-9A-Za-z_.]+$/;
export function isPlainUri(uri: string): boolean {
  return URI_PATTERN.test(uri) && uri !== '.' && uri !== '..';
}

/** updateSendRate: a negative rate is refused before this (401); above the maximum it is clamped (api.md §4). */
export function clampSendRate(rate: number): number {
  return Math.min(Math.max(0, rate), DEFAULTS.maxSendRate);
}

export type HookKind = 'backup' | 'restore';
/** The hook a bundle's backup or restore runs: the Ex form where the bundle has it, as the reference prefers. */
export function preferredHook(hooks: readonly string[], kind: HookKind): 'onBackupEx' | 'onBackup' | 'onRestoreEx' | 'onRestore' | undefined {
  const [ex, plain] = kind === 'backup' ? (['onBackupEx', 'onBackup'] as const) : (['onRestoreEx', 'onRestore'] as const);
  return hooks.includes(ex) ? ex : hooks.includes(plain) ? plain : undefined;
}

export type RunOutcome = 'done' | 'partial' | 'failed' | 'interrupted';
/** A whole run: done when every bundle is, failed when none is (or the run itself failed), partial between. */
export function runOutcome(bundles: readonly Pick<BundleOutcome, 'state'>[], opts: { error?: unknown; interrupted?: boolean } = {}): RunOutcome {
  if (opts.interrupted) return 'interrupted';
  const done = bundles.filter((b) => b.state === 'done').length;
  return opts.error || done === 0 ? 'failed' : done < bundles.length ? 'partial' : 'done';
}

/**
 * How a session ended, from its bundles: done when every bundle is, partial
 * when some are, failed when none is and one failed, cancelled when none is
 * and none failed (cancelled, never started, or no bundle at all).
 */
export function sessionOutcome(bundles: readonly Pick<BundleOutcome, 'state'>[]): SessionOutcome {
  const done = bundles.filter((b) => b.state === 'done').length;
  if (done > 0) return done === bundles.length ? 'done' : 'partial';
  return bundles.some((b) => b.state === 'failed') ? 'failed' : 'cancelled';
}

/** A failure that carries a reference code (api.md §6) and is never retried. */
export function codedFailure(code: number, detail: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FAILURE_TYPE, message: errorInfo(code, detail).message, details: [code], nonRetryable: true });
}

/** The reference code and message a failure carries, itself or in its causes (codedFailure's, across activities); else undefined. */
export function codedInfo(err: unknown): ErrorInfo | undefined {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    if (e instanceof ApplicationFailure && e.type === FAILURE_TYPE && typeof e.details?.[0] === 'number') return { code: e.details[0], message: e.message };
  }
  return undefined;
}

/** What a bundle's pack gave, for its onResultReport. */
export interface PackedSummary {
  files: number;
  dirs: number;
  bytes: number;
  handOver: number;
  skipped: number;
  changed?: number;
  unchanged?: number;
  deleted?: number;
}

/** A backup bundle's onResultReport string: its hook's output when it has one, else what was packed and how long it took. */
export function backupResultJson(bundleName: string, incremental: boolean, hookOutput: string, packed: PackedSummary, durationMs: number): string {
  return (
    hookOutput ||
    JSON.stringify({
      bundleName,
      files: packed.files,
      dirs: packed.dirs,
      bytes: packed.bytes,
      handedOver: packed.handOver,
      skipped: packed.skipped,
      ...(incremental ? { changed: packed.changed, unchanged: packed.unchanged, deleted: packed.deleted } : {}),
      durationMs,
    })
  );
}
