/**
 * The tool lease: a session hears from its tool through the tool's
 * acknowledgements (the tool library sends one at least every third of the
 * timeout, also when nothing new arrived). A tool silent for the whole timeout
 * is gone (killed, its terminal closed, its host lost): the session then ends
 * by itself instead of holding its bundles forever. Pure: the workflow feeds
 * it workflow time, so it replays the same.
 */
export interface LeaseState {
  timeoutMs: number;
  /** When the tool was last heard from (epoch ms, workflow time). */
  seenAt: number;
}

export class ToolLease {
  private seenAt: number;
  readonly timeoutMs: number;

  constructor(timeoutMs: number, now: number, carried?: LeaseState) {
    this.timeoutMs = carried?.timeoutMs ?? timeoutMs;
    this.seenAt = carried?.seenAt ?? now;
  }

  get lastSeen(): number {
    return this.seenAt;
  }

  /** The tool spoke (an acknowledgement, fresh or repeated). */
  seen(now: number): void {
    this.seenAt = Math.max(this.seenAt, now);
  }

  /** How long until the tool counts as gone (at least 1 ms: a workflow timer needs a positive duration). */
  remainingMs(now: number): number {
    return Math.max(1, this.seenAt + this.timeoutMs - now);
  }

  expired(now: number): boolean {
    return now - this.seenAt >= this.timeoutMs;
  }

  /** Heard from within the timeout: its tool is still attached. */
  attached(now: number): boolean {
    return !this.expired(now);
  }

  /** Why the session gives up on its tool, e.g. "tool silent for 30 s". */
  silence(now: number): string {
    return `tool silent for ${Math.round((now - this.seenAt) / 1000)} s (tool timeout ${Math.round(this.timeoutMs / 1000)} s)`;
  }

  toCarried(): LeaseState {
    return { timeoutMs: this.timeoutMs, seenAt: this.seenAt };
  }
}
