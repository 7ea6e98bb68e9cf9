/**
 * The outcome of each bundle of one session, as a run sees it from its
 * callbacks, and how a run ends: the close-out of bundles the session never
 * finished, the run's outcome (common/rules.ts), and the two other ways a
 * wait for the session ends (interrupted, the workflow closed under us).
 */
import type { Client } from '@temporalio/client';
import type { BusinessError } from '../../common/businessError.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { runOutcome, type RunOutcome } from '../../common/rules.js';
import type { BundleOutcome, SessionResult } from '../../common/session.js';
import { SessionEndedElsewhere, toBusinessError } from '../failures.js';

export const errorOf = (err: BusinessError<unknown>): ErrorInfo => ({ code: err.code, message: err.message });

/** What a session, or a whole run, came to. */
export interface RunSummary {
  bundles: BundleOutcome[];
  /** Set when the session itself failed (not just some bundles). */
  error?: ErrorInfo;
  interrupted: boolean;
  /** The session was ended by someone else, in words ("released by another client", "abandoned by its tool (…)"). */
  endedElsewhere?: string;
  outcome: RunOutcome;
}

export class BundleTally {
  private readonly outcomes = new Map<string, BundleOutcome>();
  private closed = false;

  constructor(names: readonly string[]) {
    for (const name of names) this.outcome(name);
  }

  /** Once closed out, late events (the tail of a released session) change nothing. */
  get settled(): boolean {
    return this.closed;
  }

  /** The bundle's outcome so far; one the session reports unasked is added. */
  outcome(name: string): BundleOutcome {
    let o = this.outcomes.get(name);
    if (!o) this.outcomes.set(name, (o = { bundleName: name, state: 'pending', files: 0, bytes: 0 }));
    return this.closed ? { ...o } : o;
  }

  begin(name: string): void {
    this.outcome(name).state = 'running';
  }

  /** The bundle cannot end done; the first error is the one kept. True when it was running (the caller may stop it). */
  fail(name: string, error: ErrorInfo): boolean {
    const o = this.outcome(name);
    const running = o.state === 'running';
    o.state = 'failed';
    o.error ??= error;
    return running;
  }

  /**
   * The bundle ended: failed with `error`, else done unless it failed on the
   * way. `replace`: the end's error replaces an earlier one (a backup's end
   * says why the bundle failed; a restore keeps the first cause).
   */
  end(name: string, error?: ErrorInfo, replace = false): BundleOutcome {
    const o = this.outcome(name);
    if (error) {
      o.state = 'failed';
      o.error = replace ? error : (o.error ?? error);
    } else if (o.state !== 'failed') o.state = 'done';
    return { ...o };
  }

  /** The session's own result after a release: its states decide; the counts are the larger of its and ours. */
  takeReleased(released: readonly BundleOutcome[]): void {
    for (const r of released) {
      const o = this.outcomes.get(r.bundleName);
      if (!o || this.closed) continue;
      Object.assign(o, { state: r.state, error: r.error ?? o.error, files: Math.max(o.files, r.files), bytes: Math.max(o.bytes, r.bytes) });
    }
  }

  /** Ends the tally: a bundle never begun was not started; one still running failed. */
  closeOut(opts: { error?: ErrorInfo; interrupted: boolean; endedElsewhere?: string }): RunSummary {
    const why = opts.interrupted ? 'Interrupted' : opts.endedElsewhere ? `The session was ${opts.endedElsewhere}` : 'The session ended before the bundle did';
    for (const o of this.outcomes.values()) {
      if (o.state === 'pending') o.state = 'notStarted';
      else if (o.state === 'running') {
        o.state = 'failed';
        o.error ??= { code: ErrorCode.TASK_FAILED, message: why };
      }
    }
    this.closed = true;
    const bundles = [...this.outcomes.values()].map((o) => ({ ...o }));
    // Ended by someone else: no failure of the session, its bundles decide (what still ran failed above).
    const outcome = runOutcome(bundles, opts);
    return {
      bundles,
      ...(opts.error ? { error: opts.error } : {}),
      interrupted: opts.interrupted,
      ...(opts.endedElsewhere ? { endedElsewhere: opts.endedElsewhere } : {}),
      outcome,
    };
  }
}

/** A wait that never ends: the branch of a race that does not apply. */
export const never = new Promise<never>(() => undefined);

/** Resolves once `signal` aborts (at once if it has); never without one. */
export function whenAborted(signal?: AbortSignal): Promise<void> {
  if (!signal) return never;
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/**
 * Resolves with why the session workflow closed (terminated in the UI, say),
 * watched from when `after` resolves, so a run does not wait for bundle
 * events that will never come. Even completing is a failure here: a run's
 * own release comes after its wait.
 */
export function watchSessionClosed(client: Client, sessionId: string, after: Promise<void> = Promise.resolve()): Promise<BusinessError<unknown>> {
  return after.then(() =>
    client.workflow
      .getHandle(sessionId)
      .result()
      .then(
        // Released by another client or abandoned: a SessionEndedElsewhere says so.
        (result: SessionResult) => SessionEndedElsewhere.of(result) ?? toBusinessError(new Error('the session workflow completed before its bundles ended')),
        (e: unknown) => toBusinessError(e),
      ),
  );
}
