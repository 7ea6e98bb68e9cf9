/** One tar slice `part.<n>.tar` being written, and what an entry costs in one. */
import { createHash } from 'node:crypto';
import { constants as fsc, openSync, promises as fsp, writeSync } from 'node:fs';
import type { HandedFile, IndexEntry } from '../../common/manageIndex.js';
import { sliceEntryBlocks } from '../formats/sliceEntry.js';
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
 * One open tar slice, written synchronously: headers (tar-stream's encoder,
 * so the bytes are what `tar.pack()` writes), data and padding are gathered
 * in one buffer and written, and hashed, 256 KiB at a time. A page-cache
 * write costs less than a thread-pool round trip, and one hash call on 256 KiB
 * far less than one per 512-byte header.
 */
export class Slice {
  readonly handed: HandedFile;
  bytes = 2 * BLOCK; // the end-of-archive marker
  readonly #fd: number;
  readonly #sync: OutputSync;
  readonly #hash = createHash('sha256');
  readonly #buf = Buffer.allocUnsafe(WRITE_BATCH_BYTES);
  #held = 0;
  #written = 0;
  #open = true;

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

  fits(entryBytes: number, limits: PackLimits): boolean {
    const n = this.handed.entries.length;
    if (n === 0) return true; // an entry bigger than a slice still goes somewhere
    return n + 1 <= limits.sliceEntries && this.bytes + entryBytes <= limits.sliceBytes;
  }

  #flush(): void {
    if (this.#held === 0) return;
    this.#writeOut(this.#buf.subarray(0, this.#held));
    this.#held = 0;
  }

  #writeOut(buf: Buffer): void {
    this.#hash.update(buf);
    for (let off = 0; off < buf.length;) off += writeSync(this.#fd, buf, off);
    this.#written += buf.length;
    this.#sync.wrote(buf.length);
  }

  #put(chunk: Buffer): void {
    if (this.#held + chunk.length > this.#buf.length) this.#flush();
    if (chunk.length > this.#buf.length) return this.#writeOut(chunk); // after what was held
    chunk.copy(this.#buf, this.#held);
    this.#held += chunk.length;
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

  close(): void {
    this.#put(ZEROS.subarray(0, 2 * BLOCK)); // the end-of-archive marker
    this.#flush();
    this.#open = false;
    // A resumed attempt re-hashes every output it keeps, so a torn one is repacked: the transfer area needs no
    // fsync. It is flushed anyway, in the background (outputSync.ts), so that the set's flush of these very
    // inodes overlaps the packs; the fd is closed once that flush is done.
    this.#sync.finish();
    this.handed.size = this.#written;
    this.handed.sha256 = this.#hash.digest('hex');
  }

  /**
   * Closes the slice's file after a failure (it is left for the next attempt
   * to clear), once a flush running on it is done. Writes are synchronous: a
   * failed one was thrown to the caller.
   */
  abort(): void {
    if (this.#open) {
      this.#open = false;
      this.#sync.abort();
    }
  }
}
