/**
 * A bundle's deadline, which updateTimer moves (as Temporal's timer-examples
 * `UpdatableTimer`): `passed()` resolves once the latest deadline is reached,
 * re-arming its timer whenever the deadline moves meanwhile, earlier or later.
 */
import { condition } from '@temporalio/workflow';

export class UpdatableDeadline {
  private at: number;

  constructor(fromNowMs: number) {
    this.at = Date.now() + fromNowMs;
  }

  /** updateTimer: the deadline is now `fromNowMs` from now. */
  moveTo(fromNowMs: number): void {
    this.at = Date.now() + fromNowMs;
  }

  async passed(): Promise<void> {
    for (;;) {
      const armed = this.at;
      const moved = await condition(() => this.at !== armed, Math.max(1, armed - Date.now()));
      if (!moved) return;
    }
  }
}
