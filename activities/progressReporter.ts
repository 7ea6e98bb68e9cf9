/**
 * Sends a running bundle's `onProcess` event (api.md §8) to its session a
 * second after an activity starts and then every 5 seconds while it works, with the latest
 * progress the activity gave it.
 */
import type { Client } from '@temporalio/client';
import { processJson } from '../common/session.js';
import { bundleEventsSignal } from '../common/messages.js';

const PROCESS_EVERY_MS = 5_000;
/** The first report comes after this long: short work needs none, and each report is a signal to the session. */
const PROCESS_FIRST_MS = 1_000;

export class ProgressReporter {
  private latest = '';
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly client: Client,
    private readonly sessionWorkflowId: string,
    private readonly bundleName: string,
  ) {}

  start(initial: string): void {
    this.latest = initial;
    this.timer = setTimeout(() => {
      void this.send();
      this.timer = setInterval(() => void this.send(), PROCESS_EVERY_MS);
    }, PROCESS_FIRST_MS);
  }

  update(progress: string): void {
    this.latest = progress;
  }

  stop(): void {
    clearTimeout(this.timer); // clears the interval too (Node's timers share one clear)
  }

  private async send(): Promise<void> {
    await this.client.workflow
      .getHandle(this.sessionWorkflowId)
      .signal(bundleEventsSignal, [{ type: 'process', bundleName: this.bundleName, process: processJson(this.latest, Date.now()) }])
      .catch(() => undefined); // progress is best effort; the next tick tries again
  }
}
