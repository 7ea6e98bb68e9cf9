/**
 * Synchronous file-system calls are cheaper than their thread-pool round trips
 * on page-cached data, but they hold the worker's only JavaScript thread:
 * every few milliseconds of them, the event loop runs (heartbeats, queries,
 * the other bundles' activities) before the work goes on.
 */
export class LoopYield {
  #since = performance.now();
  /** A promise to await when the loop is due to run, else undefined (no promise per call on a hot path). */
  due(): Promise<void> | undefined {
    if (performance.now() - this.#since < 8) return undefined;
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.#since = performance.now();
    });
  }
}
