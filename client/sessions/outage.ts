/**
 * When the tool's failing event queries mean the service died (the
 * `onBackupServiceDied` rule), and when they mean only a slow one. A query
 * that errors (the server unreachable, no worker polling, the session gone)
 * for `ERRORS_AFTER_MS` is an outage. A query that gets no answer in time is
 * not on its own: a busy worker, e.g. replaying a long session history after
 * a failed workflow task, misses the query's deadline once and then answers.
 * Only `SILENT_AFTER_MS` with no answer at all is an outage then (a worker
 * or server killed leaves queries unanswered, not refused).
 */
/** Errors shorter than this (e.g. the workflow's first task still running) are not an outage. */
export const ERRORS_AFTER_MS = 2_000;
/** No answer for this long, three query deadlines in a row: no worker serves the session. */
export const SILENT_AFTER_MS = 15_000;

/** The query was not answered in time (the service is there, maybe busy), or it was refused or could not be sent. */
export type QueryFailure = 'noAnswer' | 'error';

/**
 * gRPC CANCELLED, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED: the service is there, busy (a query past its deadline
 * comes back as either of the first two).
 */
const SLOW = new Set<number>([1, 4, 8]);

/** The gRPC status anywhere in the error's cause chain decides (the SDK wraps it in a ServiceError). */
export function failureOf(err: unknown): QueryFailure {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number') return SLOW.has(code) ? 'noAnswer' : 'error';
  }
  return 'error';
}

export class OutageWatch {
  /** Since when no query has been answered (undefined while they are). */
  #silentSince?: number;
  /** Since when queries have errored, not only gone unanswered: from the first error's arrival, so one slow query that ends in an error is not 2 s of errors. */
  #erroringSince?: number;
  #notified = false;

  /** A query answered: whatever failed before was not an outage, and a later one is a new one. */
  answered(): void {
    this.#silentSince = undefined;
    this.#erroringSince = undefined;
    this.#notified = false;
  }

  /** A query asked at `askedAt` failed at `now`: true once per outage, when the tool is to be told. */
  failed(kind: QueryFailure, askedAt: number, now: number): boolean {
    this.#silentSince ??= askedAt;
    if (kind === 'error') this.#erroringSince ??= now;
    if (this.#notified) return false;
    const outage = now - this.#silentSince >= SILENT_AFTER_MS || (this.#erroringSince !== undefined && now - this.#erroringSince >= ERRORS_AFTER_MS);
    if (outage) this.#notified = true;
    return outage;
  }
}
