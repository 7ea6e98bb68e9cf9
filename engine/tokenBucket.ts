/**
 * A real token bucket that paces handing files over to the tool
 * (api.md §4 updateSendRate, §9: "rate r, burst ≤ r"). Unlike the reference's
 * fixed one-second windows, refill is continuous, so there is no burst at
 * window edges: at rate r the n-th take of a busy stream happens at ≈ n/r s.
 */

interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export interface TokenBucketOptions {
  /** Most tokens that may pile up while idle; clamped to [1, max(1, rate)]. */
  burst?: number;
  /** Millisecond clock, injectable so tests can drive it with fake timers. */
  now?: () => number;
}

// Floating-point refill can land a hair under 1 token at the exact due time;
// without this slack the bucket would schedule a pointless extra 1 ms timer.
const EPSILON = 1e-9;

export class TokenBucket {
  #rate = 0;
  #burst = 1;
  readonly #explicitBurst: number | undefined;
  readonly #now: () => number;
  // One token at start: a fresh bucket must not burst, whatever its capacity.
  #tokens = 1;
  #last: number;
  readonly #queue: Waiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(rate: number, opts: TokenBucketOptions = {}) {
    this.#explicitBurst = opts.burst;
    this.#now = opts.now ?? (() => performance.now());
    this.#last = this.#now();
    this.#applyRate(rate);
    this.#tokens = Math.min(1, this.#burst);
  }

  get rate(): number {
    return this.#rate;
  }

  get burst(): number {
    return this.#burst;
  }

  /** Takes effect at once: pending takes are re-timed against the new rate. */
  setRate(rate: number): void {
    // Bank what the old rate earned up to now before switching.
    this.#refill();
    this.#applyRate(rate);
    this.#tokens = Math.min(this.#tokens, this.#burst);
    this.#pump();
  }

  /** Resolves once a token is available (and consumes it); served in call order. */
  take(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.#queue.indexOf(waiter);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(signal.reason);
          // Re-time (or clear) the timer for whoever is at the head now.
          this.#pump();
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      // Bank the time spent before this call while the queue still reflects it:
      // idle time must be capped at `burst`, without the waiting slack.
      this.#refill();
      // Always queue, even with a token at hand, so a newcomer never overtakes
      // earlier waiters.
      this.#queue.push(waiter);
      this.#pump();
    });
  }

  #applyRate(rate: number): void {
    if (!Number.isFinite(rate) || rate < 0) throw new RangeError(`send rate must be a finite number ≥ 0, got ${rate}`);
    this.#rate = rate;
    const cap = Math.max(1, rate);
    const wanted = this.#explicitBurst ?? Math.max(1, Math.ceil(rate / 20));
    this.#burst = Math.min(cap, Math.max(1, wanted));
  }

  #refill(): void {
    const t = this.#now();
    const elapsed = Math.max(0, t - this.#last);
    this.#last = t;
    // Timers fire on whole milliseconds, so a waiter is served up to 1 ms after
    // its token was complete. Keeping that sub-millisecond surplus while someone
    // waits stops the rounding from adding up to drift; it is < 1 token, so it
    // never lets more than `burst` through at once.
    // Callers refill before changing the queue, so "someone waits" holds for the whole interval.
    const slack = this.#queue.length > 0 ? Math.min(this.#rate / 1000, 0.5) : 0;
    this.#tokens = Math.min(this.#burst + slack, this.#tokens + (elapsed * this.#rate) / 1000);
  }

  /** Serves whoever can be served now, then arms one timer for the head's remaining wait. */
  #pump(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#refill();
    // Rate 0 is "paused": nobody is served, even with a token in hand.
    while (this.#rate > 0 && this.#queue.length > 0 && this.#tokens >= 1 - EPSILON) {
      this.#tokens = Math.max(0, this.#tokens - 1);
      const w = this.#queue.shift()!;
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      w.resolve();
    }
    if (this.#queue.length === 0 || this.#rate === 0) return; // setRate(>0) will pump again
    // Round up so a take never happens before the bucket allows it.
    const wait = Math.max(1, Math.ceil(((1 - this.#tokens) * 1000) / this.#rate));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, wait);
  }
}
