/** The packer's throttled progress, and a pipeline step that hashes and counts what passes. */
import type { Hash } from 'node:crypto';
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

/** Hashes and counts bytes on their way through a pipeline. */
export function hashing(hash: Hash, onChunk: (n: number) => void) {
  return async function* (source: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
    for await (const c of source) {
      const chunk = typeof c === 'string' ? Buffer.from(c) : c;
      hash.update(chunk);
      onChunk(chunk.length);
      yield chunk;
    }
  };
}
