/**
 * The fds a session's event pump opened for the tool and the tool has not
 * closed yet. The tool owns and closes them; nothing tells us when it does,
 * so each fd is remembered with the (dev, ino) of the file it was opened on:
 * it counts as closed once `fstat` fails on it, or shows another file (the
 * number was closed and reused by a later open).
 */
import { fstatSync } from 'node:fs';

const FIRST_POLL_MS = 5;
const MAX_POLL_MS = 100;

export class OpenFds {
  private readonly held = new Map<number, { dev: bigint; ino: bigint }>();

  /** Remembers an fd just opened for the tool. */
  track(fd: number): void {
    const st = fstatSync(fd, { bigint: true });
    this.held.set(fd, { dev: st.dev, ino: st.ino });
  }

  /** How many tracked fds are still open on their file (closed ones are forgotten). */
  outstanding(): number {
    for (const [fd, id] of this.held) {
      let same = false;
      try {
        const st = fstatSync(fd, { bigint: true });
        same = st.dev === id.dev && st.ino === id.ino;
      } catch {
        // EBADF: the tool closed it.
      }
      if (!same) this.held.delete(fd);
    }
    return this.held.size;
  }

  /**
   * Resolves true once `needed` more fds fit under `cap` (at once when they
   * do), false if none was closed within `waitMs`. There is no event for a
   * close, so it looks again at growing intervals.
   */
  async roomFor(needed: number, cap: number, waitMs: number): Promise<boolean> {
    const limit = Math.max(cap, needed);
    if (this.outstanding() + needed <= limit) return true;
    const until = Date.now() + waitMs;
    let poll = FIRST_POLL_MS;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(poll, Math.max(1, until - Date.now()))));
      if (this.outstanding() + needed <= limit) return true;
      poll = Math.min(poll * 2, MAX_POLL_MS);
    }
    return this.outstanding() + needed <= limit;
  }
}
