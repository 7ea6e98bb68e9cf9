/**
 * At most `limit` calls running at once; the others wait their turn, in call
 * order. For a session's updates: Temporal refuses a workflow more than 10
 * updates in flight (`history.maxInFlightUpdates`) with RESOURCE_EXHAUSTED,
 * which the client retries only after a second or more (its backoff for that
 * code), so a tool asking for all its restore targets at once used to see some
 * of them a second or two late.
 */
export class InFlightLimit {
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#running < this.limit) this.#running += 1;
    // A finished call hands its place to the first waiting one.
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running -= 1;
    }
  }
}
