/**
 * syncfs, shared (restores; a resumed backup set): the bundles restored at once on one thread
 * reach their final flush at about the same time, and each used to spawn its
 * own `sync -f` (a process each, all waiting on the same writeback). Callers
 * on one file system now share flushes: one that arrives while a flush runs
 * waits for the next one, which starts only after the running one ended, so
 * every caller's flush started after its own writes, as its own call would.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';

/**
 * Runs `flush(target)` for callers, at most one at a time, each caller served by one that starts after its
 * call; a shared one flushes a target of one of its waiting callers (still there: that caller waits).
 */
export class SharedFlush {
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #nextTarget = '';

  constructor(private readonly flush: (target: string) => Promise<void>) {}

  request(target: string): Promise<void> {
    if (!this.#running) return this.#start(target);
    // The running flush may have started before this caller's writes: the next one, shared by all who wait now.
    this.#nextTarget = target;
    this.#next ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.#start(this.#nextTarget);
      });
    return this.#next;
  }

  #start(target: string): Promise<void> {
    const run = this.flush(target).finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
    this.#running = run;
    return run;
  }
}

/** One SharedFlush per file system (st_dev). */
const byDevice = new Map<number, SharedFlush>();

/** Flushes the file system holding `p` (syncfs, via coreutils `sync -f`; a global sync if that fails), shared with concurrent callers. */
export async function syncFileSystem(p: string): Promise<void> {
  const { dev } = await fsp.stat(p);
  let shared = byDevice.get(dev);
  if (!shared) byDevice.set(dev, (shared = new SharedFlush(runSync)));
  await shared.request(p);
}

function runSync(p: string): Promise<void> {
  const run = (args: string[]) => new Promise<void>((resolve, reject) => execFile('sync', args, (err) => (err ? reject(err) : resolve())));
  return run(['-f', p]).catch(() => run([]));
}
