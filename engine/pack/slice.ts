/** One tar slice `part.<n>.tar` being written, and what an entry costs in one. */
import { createHash } from 'node:crypto';
import { constants as fsc, openSync, promises as fsp } from 'node:fs';
import type { HandedFile, IndexEntry } from '../../common/manageIndex.js';
import { sliceEntryBlocks } from '../formats/sliceEntry.js';
import { writeAllAt } from '../fsx.js';
import type { WalkEntry } from '../walk.js';
import { FILE_MODE, WRITE_BATCH_BYTES, type OpenedStat, type PackLimits } from './options.js';
import type { OutputSync, OutputSyncs } from './outputSync.js';
import type { PackProgressMeter } from './progress.js';
import { changedWhileRead } from './sources.js';

const BLOCK = 512;
const ZEROS = Buffer.alloc(64 * 1024);

function pad512(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

/**
 * Bytes an entry takes in a slice: header, data padded to 512, and a pax
 * header pair when tar-stream needs one (non-ASCII or long names). A slight
 * over-estimate, which only makes slices a little smaller than the limit.
 */
export function tarEntryBytes(name: string, size: number): number {
  const len = Buffer.byteLength(name);
  const pax = len !== name.length || len > 100 ? BLOCK + pad512(len + 32) : 0;
  return BLOCK + pax + pad512(size);
}

/**
 * One open tar slice: headers (tar-stream's encoder, so the bytes are what `tar.pack()` writes), data and padding
 * are gathered in a buffer and hashed 256 KiB at a time, and each full buffer is written on libuv's thread pool
 * while the packer fills the next. The copy into the page cache (the pack's largest system time) so runs on the
 * other core beside the reads and hashing; at most one write per slice is in flight, and `room()` holds the packer
 * before its next entry while one is, so a pack holds two buffers (three while one entry fills more than one).
 */
export class Slice {
  readonly handed: HandedFile;
  bytes = 2 * BLOCK; // the end-of-archive marker
  readonly #fd: number;
  readonly #sync: OutputSync;
  readonly #hash = createHash('sha256');
  #buf: Buffer = Buffer.allocUnsafe(WRITE_BATCH_BYTES);
  /** The buffer of the write in flight, reused once it has landed. */
  #spare: Buffer | undefined;
  #held = 0;
  /** Bytes handed to writes so far: the next write's position. */
  #queued = 0;
  #writing: Promise<void> | undefined;
  #failure: Error | undefined;
  #open = true;
  #ended = false;

  /**
   * @param pos the slice's place in the index's list of files
   */
  constructor(
    readonly filePath: string,
    uri: string,
    readonly pos: number,
    syncs: OutputSyncs,
  ) {
    this.handed = { uri, kind: 'tar', size: 0, sha256: '', entries: [] };
    this.#fd = openSync(filePath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, FILE_MODE);
    this.#sync = syncs.open(filePath, this.#fd);
  }

  /** Resolves once the slice may take another entry (no write in flight); throws a failed write's error. */
  room(): Promise<void> | undefined {
    if (this.#failure) throw this.#failure;
    return this.#writing;
  }

  fits(entryBytes: number, limits: PackLimits): boolean {
    const n = this.handed.entries.length;
    if (n === 0) return true; // an entry bigger than a slice still goes somewhere
    return n + 1 <= limits.sliceEntries && this.bytes + entryBytes <= limits.sliceBytes;
  }

  /** Hashes the held bytes and writes them at their place, after the write in flight (if any) has landed. */
  #flush(): void {
    if (this.#held === 0) return;
    const batch = this.#buf.subarray(0, this.#held);
    this.#hash.update(batch);
    const at = this.#queued;
    this.#queued += batch.length;
    const before = this.#writing;
    const full = this.#buf;
    this.#buf = this.#spare ?? Buffer.allocUnsafe(WRITE_BATCH_BYTES);
    this.#spare = undefined;
    this.#held = 0;
    const run = (async () => {
      await before;
      if (this.#failure) return;
      try {
        await writeAllAt(this.#fd, batch, at);
      } catch (err) {
        this.#failure ??= err as Error;
        return;
      }
      this.#sync.wrote(batch.length);
      this.#spare = full;
    })();
    this.#writing = run;
    void run.then(() => {
      if (this.#writing === run) this.#writing = undefined;
    });
  }

  /** Copies `chunk` into the held buffer, writing each one that fills: the caller may reuse `chunk` at once. */
  #put(chunk: Buffer): void {
    for (let off = 0; off < chunk.length;) {
      if (this.#held === this.#buf.length) this.#flush();
      const n = chunk.copy(this.#buf, this.#held, off);
      this.#held += n;
      off += n;
    }
  }

  #pad(size: number): void {
    const rest = size % BLOCK;
    if (rest) this.#put(ZEROS.subarray(0, BLOCK - rest));
  }

  #header(e: IndexEntry): void {
    if (!this.#open) throw new Error('the slice is closed');
    for (const b of sliceEntryBlocks(e)) this.#put(b);
  }

  addDir(e: WalkEntry): void {
    const entry: IndexEntry = { path: e.path, kind: 'dir', size: 0, mode: e.mode, mtimeMs: e.mtimeMs, sha256: '' };
    this.#header(entry);
    this.#record(entry);
  }

  /**
   * Copies exactly `st.size` bytes of `fh` into a file entry. The header
   * already promised that many bytes, so a file that changes length meanwhile
   * is stored as tar does: cut at that length when it grew, zero-padded to it
   * when it shrank. The index entry describes the bytes stored (their
   * SHA-256), so the slice stays valid and verifiable. Returns why the stored
   * bytes may not be one moment's state of the file.
   */
  async addFile(rel: string, fh: fsp.FileHandle, st: OpenedStat, progress: PackProgressMeter): Promise<string | undefined> {
    const { size, mode, mtimeMs } = st;
    const entry: IndexEntry = { path: rel, kind: 'file', size, mode, mtimeMs, sha256: '' };
    this.#header(entry);
    const hash = createHash('sha256');
    const put = (chunk: Buffer) => {
      hash.update(chunk);
      progress.add(0, chunk.length);
      this.#put(chunk);
    };
    let read = 0;
    let sizeReason: string | undefined;
    // One byte past the promised length, to notice a file that grew.
    for await (const chunk of fh.createReadStream({ autoClose: false, start: 0, end: size }) as AsyncIterable<Buffer>) {
      const room = size - read;
      if (chunk.length > room) {
        if (room > 0) put(chunk.subarray(0, room));
        read = size;
        sizeReason = `grew past ${size} bytes, the first ${size} stored`;
        break;
      }
      put(chunk);
      read += chunk.length;
      const wait = this.room();
      if (wait) await wait;
    }
    if (read < size) {
      sizeReason = `shrank to ${read} bytes, zero-padded to ${size}`;
      for (let left = size - read; left > 0; left -= ZEROS.length) put(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
    }
    this.#pad(size);
    progress.add(1, 0);
    entry.sha256 = hash.digest('hex');
    this.#record(entry);
    return changedWhileRead(fh, st, sizeReason);
  }

  /** Adds a small file already read whole (its header states exactly the bytes read). */
  addBuffer(rel: string, data: Buffer, sha256: string, mode: number, mtimeMs: number, progress: PackProgressMeter): void {
    const entry: IndexEntry = { path: rel, kind: 'file', size: data.length, mode, mtimeMs, sha256 };
    this.#header(entry);
    this.#put(data);
    this.#pad(data.length);
    progress.add(1, data.length);
    this.#record(entry);
  }

  #record(entry: IndexEntry): void {
    this.handed.entries.push(entry);
    this.bytes += tarEntryBytes(entry.path, entry.size);
  }

  /** Writes the end-of-archive marker, waits for every write, then flushes (in the background) and fills `handed`. */
  async close(): Promise<void> {
    this.#put(ZEROS.subarray(0, 2 * BLOCK)); // the end-of-archive marker
    this.#flush();
    this.#open = false;
    await this.#writing;
    if (this.#failure) throw this.#failure;
    // A resumed attempt re-hashes every output it keeps, so a torn one is repacked: the transfer area needs no
    // fsync. It is flushed anyway, in the background (outputSync.ts), so that the set's flush of these very
    // inodes overlaps the packs; the fd is closed once that flush is done.
    this.#ended = true;
    this.#sync.finish();
    this.handed.size = this.#queued;
    this.handed.sha256 = this.#hash.digest('hex');
  }

  /**
   * Closes the slice's file after a failure (it is left for the next attempt to clear), once the write and any
   * flush running on it are done. A failed write's error is the caller's to have seen (room or close threw it).
   */
  abort(): void {
    this.#open = false;
    if (this.#ended) return;
    this.#ended = true;
    this.#sync.abort(this.#writing);
  }
}
