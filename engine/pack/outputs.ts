/**
 * What a pack run has produced so far: the index's list of handed files (in
 * hand-over order), its skipped items and totals, the slice being filled, and
 * the numbering of slices and big files. Every output is given its sidecar
 * as it completes.
 */
import path from 'node:path';
import type { HandedFile, Skipped } from '../../common/manageIndex.js';
import type { IndexTail, IndexWriter } from '../formats/manageIndex.js';
import type { PackLimits } from './options.js';
import type { OutputSyncs } from './outputSync.js';
import type { PackProgressMeter } from './progress.js';
import { lastPath, walkKey, writeDone, type Done, type ResumeState } from './resume.js';
import { Slice } from './slice.js';

export class PackOutputs {
  /**
   * The handed files so far, in hand-over order. Once a file is in the index (every file before the open
   * slice, complete), only its record stays here, its entries dropped (`entries: []`): a pack holds the
   * entries of the outputs it is filling, not the bundle's.
   */
  readonly files: HandedFile[];
  /** files[0, #indexed) are written to the index. */
  #indexed = 0;
  readonly skipped: Skipped[];
  readonly totals = { files: 0, dirs: 0, bytes: 0 };
  /** How many outputs were kept from an earlier attempt. */
  readonly kept: number;
  slice: Slice | undefined;
  #parts: number;
  #bigs: number;
  /** skipped[0, skippedMark) are recorded in slice sidecars already. */
  #skippedMark: number;

  constructor(
    private readonly outDir: string,
    private readonly config: string,
    private readonly limits: PackLimits,
    private readonly progress: PackProgressMeter,
    resumed: ResumeState | undefined,
    /** The early flushes of every output this run writes. */
    readonly syncs: OutputSyncs,
    private readonly index: IndexWriter,
  ) {
    // A copy: the resume cursor reads the kept files' entries from `resumed`, after these go to the index.
    this.files = [...(resumed?.files ?? [])];
    this.skipped = resumed?.skipped ?? [];
    for (const e of this.files.flatMap((f) => f.entries)) {
      if (e.kind === 'dir') this.totals.dirs++;
      else {
        this.totals.files++;
        this.totals.bytes += e.size;
      }
    }
    progress.files = this.totals.files;
    progress.bytes = this.totals.bytes;
    progress.durable = this.files.length;
    this.kept = this.files.length;
    this.#parts = resumed?.parts ?? 0;
    this.#bigs = resumed?.bigs ?? 0;
    this.#skippedMark = this.skipped.length;
  }

  /** Writes the complete files not yet in the index (all before the open slice) and drops their entries here. */
  async writeIndexed(): Promise<void> {
    const open = this.slice?.handed;
    while (this.#indexed < this.files.length && this.files[this.#indexed] !== open) {
      const f = this.files[this.#indexed]!;
      await this.index.add(f);
      this.files[this.#indexed++] = { ...f, entries: [] };
    }
  }

  /** Every file in the index, then the rest of it: the index is complete and in place. */
  async finishIndex(tail: IndexTail): Promise<void> {
    await this.writeIndexed();
    await this.index.finish(tail);
  }

  skip(p: string, reason: string): void {
    this.skipped.push({ path: p, reason });
  }

  /** The slice to put an entry of `entryBytes` in, closing the full one first. */
  async sliceFor(entryBytes: number): Promise<Slice> {
    if (this.slice && !this.slice.fits(entryBytes, this.limits)) await this.closeSlice();
    if (!this.slice) {
      const uri = `part.${this.#parts++}.tar`;
      this.slice = new Slice(path.join(this.outDir, uri), uri, this.files.length, this.syncs);
      this.files.push(this.slice.handed); // hand-over order = creation order; size/sha256 filled on close
    }
    // The slice's last buffer still being written: the next entry waits for it (two buffers per pack at most).
    const wait = this.slice.room();
    if (wait) await wait;
    return this.slice;
  }

  /** Closes the open slice; its sidecar takes the skipped items up to its last entry. */
  async closeSlice(): Promise<void> {
    const s = this.slice;
    if (!s) return;
    await s.close();
    this.slice = undefined;
    const last = walkKey(lastPath(s.handed));
    const skipped = this.skipped;
    let end = this.#skippedMark;
    while (end < skipped.length && Buffer.compare(walkKey(skipped[end]!.path), last) <= 0) end++;
    await writeDone(this.outDir, { config: this.config, pos: s.pos, skipped: skipped.slice(this.#skippedMark, end), handed: s.handed });
    this.#skippedMark = end;
    this.progress.completed();
    await this.writeIndexed();
  }

  /** The uri the next big file is written to. */
  nextBigFileUri(): string {
    return `file.${this.#bigs++}`;
  }

  /** A big file just packed. */
  async addBigFile(handed: HandedFile): Promise<void> {
    await writeDone(this.outDir, { config: this.config, pos: this.files.length, skipped: [], handed });
    this.files.push(handed);
    this.progress.completed();
    await this.writeIndexed();
  }

  /**
   * A big file an earlier attempt completed after the last slice it kept (numbered on, as pending
   * files are used in order). If the tree changed before it, its place in the index may have too:
   * the new one is recorded, so that a later resume finds the sidecars in order.
   */
  async addReusedBigFile(done: Done): Promise<void> {
    if (done.pos !== this.files.length) await writeDone(this.outDir, { ...done, pos: this.files.length });
    this.files.push(done.handed);
    this.#bigs++;
    this.totals.files++;
    this.totals.bytes += done.handed.size;
    this.progress.add(1, done.handed.size);
    this.progress.completed();
    await this.writeIndexed();
  }
}
