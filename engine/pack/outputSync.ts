/**
 * The pack's outputs written back to disk while the pack runs. The transfer area is transient (a torn output is
 * repacked, not trusted), but a full backup's set keeps these very inodes by hard link and must fdatasync each before
 * its summary: started here, that writeback overlaps the packs instead of following them (the disk is otherwise idle
 * until the kernel's own writeback, some 30 s later). The set's flush stays as it is; it finds little left to write.
 */
import { close, fdatasync, rmSync } from 'node:fs';
import { promisify } from 'node:util';

/** An output's writeback is started each time this much more has been written to it since the last one began. */
export const EARLY_SYNC_BYTES = 16 * 1024 * 1024;

const fdatasyncP = promisify(fdatasync);
const closeP = promisify(close);

/**
 * The early flushes of one pack run. A flush's error fails the run: on Linux a second fsync may not report a write
 * error the first one consumed, so the set's later fdatasync could say "fine" for lost bytes. The output is removed
 * at once, so that no resumed attempt keeps it (a kept output is re-hashed, which reads the page cache, not the disk).
 */
export class OutputSyncs {
  readonly #pending = new Set<Promise<void>>();
  #failure: Error | undefined;

  /** The writeback of one output file open as `fd` (a FileHandle's fd too: `closeFd` then closes it). */
  open(filePath: string, fd: number, closeFd: () => Promise<void> = () => closeP(fd)): OutputSync {
    return new OutputSync(this, filePath, fd, closeFd);
  }

  /** Runs `job` in the background; its error is this run's. */
  track(job: Promise<void>): Promise<void> {
    const p = job.catch((err: Error) => void (this.#failure ??= err));
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
    return p;
  }

  /** Removes an output whose flush failed and throws that flush's error (not a failed removal's). */
  failed(filePath: string, err: Error): never {
    try {
      rmSync(filePath, { force: true });
    } catch {
      // Unlikely in the pack's own folder; the flush's error is the one that tells what went wrong.
    }
    throw err;
  }

  /** Throws the first flush error so far, without waiting: a pack stops at its next entry. */
  check(): void {
    if (this.#failure) throw this.#failure;
  }

  /** Every flush started has ended and every output's fd is closed; throws the first error. */
  async settle(): Promise<void> {
    while (this.#pending.size) await Promise.all([...this.#pending]);
    this.check();
  }
}

/** One output's flushes: at most one at a time, its fd closed only once none runs on it. */
export class OutputSync {
  #since = 0;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(
    private readonly syncs: OutputSyncs,
    private readonly filePath: string,
    private readonly fd: number,
    private readonly closeFd: () => Promise<void>,
  ) {}

  #datasync(): Promise<void> {
    return fdatasyncP(this.fd).catch((err: Error) => this.syncs.failed(this.filePath, err));
  }

  /** `bytes` more written: starts a flush on the thread pool when enough is dirty and none runs. */
  wrote(bytes: number): void {
    this.#since += bytes;
    if (this.#running || this.#closed || this.#since < EARLY_SYNC_BYTES) return;
    this.#since = 0;
    const run = this.syncs.track(this.#datasync());
    this.#running = run;
    void run.finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
  }

  /** The output is complete: flushes its rest, then closes the fd, in the background. */
  finish(): void {
    this.#end(true);
  }

  /** The output is abandoned: closes the fd once a running flush, and `writing` (a write in flight), are done. */
  abort(writing?: Promise<void>): void {
    this.#end(false, writing);
  }

  #end(flush: boolean, writing?: Promise<void>): void {
    if (this.#closed) return;
    this.#closed = true;
    const before = this.#running;
    this.syncs.track(
      (async () => {
        try {
          await writing;
          await before;
          if (flush) await this.#datasync();
        } finally {
          await this.closeFd();
        }
      })(),
    );
  }
}
