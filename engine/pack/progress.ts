/** The packer's throttled progress. */
import { PROGRESS_EVERY_MS, ProgressMeter } from '../progressMeter.js';
import type { PackPhase, PackProgress } from './options.js';

/**
 * Reports at most every PROGRESS_EVERY_MS, plus once whenever an output
 * becomes durable and a final time. The first data packed is reported at
 * once; mere walking (tick) reports from PROGRESS_EVERY_MS on.
 */
export class PackProgressMeter extends ProgressMeter<PackProgress> {
  durable = 0;
  phase: PackPhase = 'pack';
  readonly #start = Date.now();

  /** Keeps reports (heartbeats) going while nothing is added: walking, verifying. */
  tick(): void {
    if (Date.now() - Math.max(this.lastEmit, this.#start) >= PROGRESS_EVERY_MS) this.emit();
  }

  /** An output became durable: reported at once, so the next heartbeat carries it. */
  completed(): void {
    this.durable++;
    this.emit();
  }

  protected override snapshot(): PackProgress {
    return { files: this.files, bytes: this.bytes, phase: this.phase, durable: this.durable };
  }
}
