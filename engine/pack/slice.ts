/** One tar slice `part.<n>.tar` being written, and what an entry costs in one. */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, constants as fsc, openSync, promises as fsp, writeSync } from 'node:fs';
import tar from 'tar-stream';
import type { HandedFile, IndexEntry } from '../../common/manageIndex.js';
import { sliceEntryHeader } from '../formats/sliceEntry.js';
import type { WalkEntry } from '../walk.js';
import { FILE_MODE, WRITE_BATCH_BYTES, type OpenedStat, type PackLimits } from './options.js';
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

/** One open tar slice: a tar-stream pack drained into `part.<n>.tar` while entries are added. */
export class Slice {
  readonly pack = tar.pack();
  readonly handed: HandedFile;
  bytes = 2 * BLOCK; // the end-of-archive marker
  readonly #written: Promise<void>;
  readonly #hash = createHash('sha256');

  /**
   * @param pos the slice's place in the index's list of files
   */
  constructor(
    readonly filePath: string,
    uri: string,
    readonly pos: number,
  ) {
    this.handed = { uri, kind: 'tar', size: 0, sha256: '', entries: [] };
    const pack = this.pack;
    const hash = this.#hash;
    // tar-stream's streams are streamx, not Node streams: read it as an async iterable. Its
    // chunks are small (512-byte headers, file data): gathered and written synchronously about a
    // MiB at a time, which costs far less than a thread-pool round trip per chunk. The loop takes
    // the next chunk only after writing, so the pack is still held back by the disk.
    this.#written = (async () => {
      const fd = openSync(filePath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, FILE_MODE);
      try {
        let held: Buffer[] = [];
        let heldBytes = 0;
        const flush = () => {
          const buf = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
          for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off);
          held = [];
          heldBytes = 0;
        };
        for await (const chunk of pack as AsyncIterable<Buffer>) {
          hash.update(chunk);
          held.push(chunk);
          heldBytes += chunk.length;
          if (heldBytes >= WRITE_BATCH_BYTES || held.length >= 512) flush();
        }
        flush();
      } finally {
        closeSync(fd);
      }
    })();
    // Failures are observed through #written and entry callbacks; without these
    // no-op handlers a destroyed streamx stream's 'error' event would crash the process.
    this.#written.catch(() => {});
    this.pack.on('error', () => {});
  }

  fits(entryBytes: number, limits: PackLimits): boolean {
    const n = this.handed.entries.length;
    if (n === 0) return true; // an entry bigger than a slice still goes somewhere
    return n + 1 <= limits.sliceEntries && this.bytes + entryBytes <= limits.sliceBytes;
  }

  async addDir(e: WalkEntry): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.pack
        .entry(sliceEntryHeader({ path: e.path, kind: 'dir', size: 0, mode: e.mode, mtimeMs: e.mtimeMs }), (err) => (err ? reject(err) : resolve()))
        .on('error', () => {}) // reported through the callback
        .end(undefined); // streamx's typings want an argument; undefined means "no more data"
    });
    this.#record({ path: e.path, kind: 'dir', size: 0, mode: e.mode, mtimeMs: e.mtimeMs, sha256: '' });
  }

  /**
   * Streams exactly `st.size` bytes of `fh` into a file entry, with
   * backpressure. The header already promised that many bytes, so a file that
   * changes length meanwhile is stored as tar does: cut at that length when it
   * grew, zero-padded to it when it shrank. The index entry describes the
   * bytes stored (their SHA-256), so the slice stays valid and verifiable.
   * Returns why the stored bytes may not be one moment's state of the file.
   */
  async addFile(rel: string, fh: fsp.FileHandle, st: OpenedStat, progress: PackProgressMeter): Promise<string | undefined> {
    const { size, mode, mtimeMs } = st;
    const hash = createHash('sha256');
    let sink!: ReturnType<tar.Pack['entry']>;
    const done = new Promise<void>((resolve, reject) => {
      sink = this.pack.entry(sliceEntryHeader({ path: rel, kind: 'file', size, mode, mtimeMs }), (err) => (err ? reject(err) : resolve()));
    });
    done.catch(() => {});
    sink.on('error', () => {}); // reported through `done`
    const put = async (chunk: Buffer) => {
      hash.update(chunk);
      progress.add(0, chunk.length);
      if (!sink.write(chunk)) await Promise.race([once(sink, 'drain'), done]);
    };
    let read = 0;
    let sizeReason: string | undefined;
    // One byte past the promised length, to notice a file that grew.
    for await (const chunk of fh.createReadStream({ autoClose: false, start: 0, end: size }) as AsyncIterable<Buffer>) {
      const room = size - read;
      if (chunk.length > room) {
        if (room > 0) await put(chunk.subarray(0, room));
        read = size;
        sizeReason = `grew past ${size} bytes, the first ${size} stored`;
        break;
      }
      await put(chunk);
      read += chunk.length;
    }
    if (read < size) {
      sizeReason = `shrank to ${read} bytes, zero-padded to ${size}`;
      for (let left = size - read; left > 0; left -= ZEROS.length) await put(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
    }
    sink.end(undefined);
    await done;
    progress.add(1, 0);
    this.#record({ path: rel, kind: 'file', size, mode, mtimeMs, sha256: hash.digest('hex') });
    return changedWhileRead(fh, st, sizeReason);
  }

  /** Adds a small file already read whole (its header states exactly the bytes read). */
  async addBuffer(rel: string, data: Buffer, sha256: string, mode: number, mtimeMs: number, progress: PackProgressMeter): Promise<void> {
    // The callback fires once the pack took the data, which waits for the slice file to drain: backpressure.
    await new Promise<void>((resolve, reject) => {
      this.pack.entry(sliceEntryHeader({ path: rel, kind: 'file', size: data.length, mode, mtimeMs }), data, (err) => (err ? reject(err) : resolve()));
    });
    progress.add(1, data.length);
    this.#record({ path: rel, kind: 'file', size: data.length, mode, mtimeMs, sha256 });
  }

  #record(entry: IndexEntry): void {
    this.handed.entries.push(entry);
    this.bytes += tarEntryBytes(entry.path, entry.size);
  }

  async close(): Promise<void> {
    this.pack.finalize();
    await this.#written;
    this.handed.size = (await fsp.stat(this.filePath)).size;
    this.handed.sha256 = this.#hash.digest('hex');
    // No fsync: a resumed attempt re-hashes every output it keeps, so a torn one is repacked, not trusted.
  }

  /**
   * Tears the slice down after a failure (the file is left for the next attempt
   * to clear) and returns the error writing the slice failed with, if any.
   */
  async abort(reason: unknown): Promise<unknown> {
    this.pack.destroy(reason instanceof Error ? reason : new Error(String(reason)));
    return this.#written.then(
      () => undefined,
      (err: unknown) => err,
    );
  }
}
