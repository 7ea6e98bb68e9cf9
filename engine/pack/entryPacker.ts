/**
 * Packs one walked entry: a folder into the open slice; a file into a slice
 * (read whole when small, streamed otherwise) or alone as a big file; or not
 * at all when an increment's base already holds its bytes.
 */
import { hash } from 'node:crypto';
import type { HandedFile } from '../../common/manageIndex.js';
import type { ManifestEntry } from '../../common/manifest.js';
import type { WalkEntry } from '../walk.js';
import { packBigFile } from './bigFile.js';
import type { IncrementRecorder } from './increment.js';
import { WHOLE_READ_BYTES, type PackLimits } from './options.js';
import type { PackOutputs } from './outputs.js';
import type { PackProgressMeter } from './progress.js';
import type { Done, ResumeCursor } from './resume.js';
import { tarEntryBytes } from './slice.js';
import { hashOpenFile, openSource, readSmallFile } from './sources.js';

export class EntryPacker {
  /**
   * Where small files are read whole, one after the other (the packer reads one at a time), and big
   * files copied through a chunk at a time: no buffer of its own per pack (eight run at once).
   */
  readonly #scratch: Buffer;

  constructor(
    private readonly out: PackOutputs,
    private readonly cursor: ResumeCursor,
    private readonly recorder: IncrementRecorder | undefined,
    private readonly base: Map<string, ManifestEntry> | undefined,
    private readonly limits: PackLimits,
    private readonly outDir: string,
    private readonly progress: PackProgressMeter,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.#scratch = Buffer.allocUnsafe(Math.min(limits.bigFileBytes, WHOLE_READ_BYTES) + 1);
  }

  async dir(item: WalkEntry): Promise<void> {
    const s = await this.out.sliceFor(tarEntryBytes(item.path, 0));
    s.addDir(item);
    await this.recorder?.record(s.handed.entries.at(-1)!);
    this.out.totals.dirs++;
  }

  async reusedBigFile(done: Done): Promise<void> {
    await this.out.addReusedBigFile(done);
    await this.recorder?.record(done.handed.entries[0]!);
  }

  /**
   * An increment's file with its base's size and mtime, recorded without being opened or read: most of an
   * increment's files. Synchronous, so the pack's loop spends no promise on them: undefined when the file is
   * not such a one (file() packs it), else the manifest writer's promise (BUFFERED unless it went to disk).
   */
  unchanged(item: WalkEntry): Promise<void> | undefined {
    if (!this.recorder) return undefined;
    const b = this.base?.get(item.path);
    if (b?.kind !== 'file' || b.size !== item.size || b.mtimeMs !== item.mtimeMs) return undefined;
    return this.recorder.recordUnchanged(item, b);
  }

  /** A file unchanged() did not take: packed, or recorded as unchanged once its bytes are seen to be the base's. */
  async file(item: WalkEntry): Promise<void> {
    const { out, recorder: track, limits, progress, signal } = this;
    const b = this.base?.get(item.path);
    // A small file, read whole by one synchronous read: far cheaper than a stream per file.
    const wholeRead = Math.min(limits.bigFileBytes, WHOLE_READ_BYTES);
    const small = item.size <= wholeRead ? readSmallFile(item.absPath, wholeRead, this.#scratch) : 'big';
    if (small !== 'big') {
      if ('skip' in small) return out.skip(item.path, small.skip);
      const sha256 = hash('sha256', small.data, 'hex');
      // Size or mtime moved: packed unless the bytes are still the base's.
      if (track && b?.kind === 'file' && b.size === small.data.length && b.sha256 === sha256) {
        await track.recordUnchanged({ path: item.path, mode: small.mode, mtimeMs: small.mtimeMs }, b);
        return;
      }
      const s = await out.sliceFor(tarEntryBytes(item.path, small.data.length));
      s.addBuffer(item.path, small.data, sha256, small.mode, small.mtimeMs, progress);
      if (small.changed) out.skip(item.path, small.changed);
      await track?.record(s.handed.entries.at(-1)!);
      out.totals.files++;
      out.totals.bytes += small.data.length;
      return;
    }
    // Re-open and re-stat: the file may have changed since the walk listed it.
    const src = await openSource(item.absPath);
    if ('skip' in src) return out.skip(item.path, src.skip);
    try {
      // Size or mtime moved: packed unless the bytes are still the base's (a different size means they are not).
      if (track && b?.kind === 'file' && b.size === src.size && (await hashOpenFile(src.fh, src.size, progress, signal)) === b.sha256) {
        await track.recordUnchanged({ path: item.path, mode: src.mode, mtimeMs: src.mtimeMs }, b);
        return;
      }
      let size: number;
      let changed: string | undefined;
      if (src.size > limits.bigFileBytes) {
        await this.cursor.dropPending(); // its number is taken by this one
        let handed: HandedFile;
        ({ handed, changed } = await packBigFile(src.fh, item.path, src, out.nextBigFileUri(), this.outDir, this.#scratch, progress, out.syncs, signal));
        await out.addBigFile(handed);
        size = handed.size;
        await track?.record(handed.entries[0]!);
      } else {
        const s = await out.sliceFor(tarEntryBytes(item.path, src.size));
        changed = await s.addFile(item.path, src.fh, src, progress);
        size = src.size;
        await track?.record(s.handed.entries.at(-1)!);
      }
      if (changed) out.skip(item.path, changed);
      out.totals.files++;
      out.totals.bytes += size;
    } finally {
      await src.fh.close();
    }
  }
}
