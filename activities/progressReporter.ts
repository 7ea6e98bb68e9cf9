/**
 * Sends a running bundle's `onProcess` event (api.md §8) to its session at the
 * start and then every 5 seconds while an activity works, with the latest
 * progress the activity gave it.
 */
import type { Client } from '@temporalio/client';
import { processJson } from '../common/session.js';
import { bundleEventsSignal } from '../workflows/sessionWorkflow.js';

export const PROCESS_EVERY_MS = 5_000;

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
    void this.send();
    this.timer = setInterval(() => void this.send(), PROCESS_EVERY_MS);
  }

  update(progress: string): void {
    this.latest = progress;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async send(): Promise<void> {
    await this.client.workflow
      .getHandle(this.sessionWorkflowId)
      .signal(bundleEventsSignal, [{ type: 'process', bundleName: this.bundleName, process: processJson(this.latest, Date.now()) }])
      .catch(() => undefined); // progress is best effort; the next tick tries again
  }
}
