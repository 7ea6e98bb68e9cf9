/**
 * Packs a bundle's data/ folder for hand-over (api.md §9): big files alone as
 * `file.<n>`, everything else (small files and every folder, so empty folders
 * survive) in tar slices `part.<n>.tar`, then the index `manage.json`.
 * Pure Node, no Temporal; data is streamed, never held whole in memory.
 */
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { constants as fsc, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { PACK_LIMITS } from '../common/device.js';
import {
  INDEX_URI,
  INDEX_VERSION,
  ManageIndexSchema,
  type HandedFile,
  type IndexEntry,
  type ManageIndex,
  type Skipped,
} from '../common/manageIndex.js';
import { specialKind, walkBundle, type WalkEntry, type WalkProfile } from './walkBundle.js';

export type PackLimits = { -readonly [K in keyof typeof PACK_LIMITS]: number };

export interface PackProgress {
  files: number;
  bytes: number;
  phase: 'pack';
}

export interface PackOptions {
  bundleName: string;
  dataDir: string;
  outDir: string;
  profile: WalkProfile;
  onProgress?: (p: PackProgress) => void;
  signal?: AbortSignal;
  /** Overrides of PACK_LIMITS (tests use small ones). */
  limits?: Partial<PackLimits>;
}

export interface PackSummary {
  files: number;
  dirs: number;
  bytes: number;
  /** Number of HandedFile records (slices and big files), not counting manage.json. */
  handOver: number;
  skipped: number;
  indexPath: string;
}

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const PROGRESS_EVERY_MS = 250;
const BLOCK = 512;

/** Thrown when a file's length changed between stat and read, so a tar header would lie. */
export class FileChangedError extends Error {
  readonly code = 'ECHANGED';
  constructor(readonly path: string, expected: number, got: string) {
    super(`${path} changed while being packed: expected ${expected} bytes, read ${got}`);
    this.name = 'FileChangedError';
  }
}

export async function readManageIndex(indexPath: string): Promise<ManageIndex> {
  return ManageIndexSchema.parse(JSON.parse(await fsp.readFile(indexPath, 'utf8')));
}

function pad512(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

/**
 * Bytes an entry takes in a slice: header, data padded to 512, and a pax
 * header pair when tar-stream needs one (non-ASCII or long names). A slight
 * over-estimate, which only makes slices a little smaller than the limit.
 */
function tarEntryBytes(name: string, size: number): number {
  const len = Buffer.byteLength(name);
  const pax = len !== name.length || len > 100 ? BLOCK + pad512(len + 32) : 0;
  return BLOCK + pax + pad512(size);
}

/** Throttles progress reports to one per PROGRESS_EVERY_MS, plus a final one. */
class Progress {
  files = 0;
  bytes = 0;
  #last = 0;
  constructor(private readonly report?: (p: PackProgress) => void) {}
  add(files: number, bytes: number): void {
    this.files += files;
    this.bytes += bytes;
    const now = Date.now();
    if (this.report && now - this.#last >= PROGRESS_EVERY_MS) {
      this.#last = now;
      this.report({ files: this.files, bytes: this.bytes, phase: 'pack' });
    }
  }
  final(): void {
    this.report?.({ files: this.files, bytes: this.bytes, phase: 'pack' });
  }
}

/** Hashes and counts bytes on their way through a pipeline. */
function hashing(hash: Hash, onChunk: (n: number) => void) {
  return async function* (source: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
    for await (const c of source) {
      const chunk = typeof c === 'string' ? Buffer.from(c) : c;
      hash.update(chunk);
      onChunk(chunk.length);
      yield chunk;
    }
  };
}

/** One open tar slice: a tar-stream pack drained into `part.<n>.tar` while entries are added. */
class Slice {
  readonly pack = tar.pack();
  readonly handed: HandedFile;
  bytes = 2 * BLOCK; // the end-of-archive marker
  readonly #written: Promise<void>;
  readonly #hash = createHash('sha256');

  constructor(readonly filePath: string, uri: string) {
    this.handed = { uri, kind: 'tar', size: 0, sha256: '', entries: [] };
    const pack = this.pack;
    const hash = this.#hash;
    this.#written = pipeline(
      // tar-stream's streams are streamx, not Node streams: read it as an async iterable.
      async function* () {
        for await (const chunk of pack as AsyncIterable<Buffer>) {
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(filePath, { flags: 'wx', mode: FILE_MODE }),
    );
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
        .entry({ name: e.path, type: 'directory', mode: e.mode, mtime: new Date(e.mtimeMs) }, (err) =>
          err ? reject(err) : resolve(),
        )
        .on('error', () => {}) // reported through the callback
        .end(undefined); // streamx's typings want an argument; undefined means "no more data"
    });
    this.#record({ path: e.path, kind: 'dir', size: 0, mode: e.mode, mtimeMs: e.mtimeMs, sha256: '' });
  }

  /**
   * Streams exactly `size` bytes of `fh` into a file entry, with backpressure.
   * The header already promised `size` bytes, so a file that got shorter or
   * longer meanwhile cannot be recorded truthfully: throw ECHANGED and let the
   * (retried) activity start over rather than write a corrupt entry.
   */
  async addFile(rel: string, fh: fsp.FileHandle, size: number, mode: number, mtimeMs: number, progress: Progress) {
    const hash = createHash('sha256');
    let sink!: ReturnType<tar.Pack['entry']>;
    const done = new Promise<void>((resolve, reject) => {
      sink = this.pack.entry({ name: rel, type: 'file', size, mode, mtime: new Date(mtimeMs) }, (err) =>
        err ? reject(err) : resolve(),
      );
    });
    done.catch(() => {});
    sink.on('error', () => {}); // reported through `done`
    let read = 0;
    for await (const chunk of fh.createReadStream({ autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
      read += chunk.length;
      if (read > size) throw new FileChangedError(rel, size, `more than ${size}`);
      hash.update(chunk);
      progress.add(0, chunk.length);
      if (!sink.write(chunk)) await Promise.race([once(sink, 'drain'), done]);
    }
    if (read !== size) throw new FileChangedError(rel, size, String(read));
    sink.end(undefined);
    await done;
    progress.add(1, 0);
    this.#record({ path: rel, kind: 'file', size, mode, mtimeMs, sha256: hash.digest('hex') });
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
    await fsyncPath(this.filePath);
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

function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A retried activity starts clean: outDir exists, is 0700 and is empty. */
async function prepareOutDir(outDir: string): Promise<void> {
  await fsp.mkdir(outDir, { recursive: true, mode: DIR_MODE });
  await fsp.chmod(outDir, DIR_MODE);
  for (const name of await fsp.readdir(outDir)) {
    await fsp.rm(path.join(outDir, name), { recursive: true, force: true });
  }
}

/**
 * Opens a file to pack without following a symlink that replaced it, and
 * without blocking on a FIFO that did; then checks it is still a regular file.
 * Returns the reason to skip it instead when it vanished or cannot be read.
 */
async function openSource(absPath: string): Promise<{ fh: fsp.FileHandle; size: number; mode: number; mtimeMs: number } | { skip: string }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(absPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return { skip: code === 'ENOENT' ? 'vanished' : code === 'ELOOP' ? 'symlink' : code };
  }
  const st = await fh.stat().catch(async (err: unknown) => {
    await fh.close();
    throw err;
  });
  if (!st.isFile()) {
    await fh.close();
    return { skip: specialKind(st) };
  }
  return { fh, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };
}

export async function packBundle(opts: PackOptions): Promise<PackSummary> {
  const limits: PackLimits = { ...PACK_LIMITS, ...opts.limits };
  const { outDir, signal } = opts;
  signal?.throwIfAborted();
  await prepareOutDir(outDir);

  const files: HandedFile[] = [];
  const skipped: Skipped[] = [];
  const totals = { files: 0, dirs: 0, bytes: 0 };
  const progress = new Progress(opts.onProgress);
  let parts = 0;
  let bigs = 0;
  let slice: Slice | undefined;

  /** The slice to put an entry of `entryBytes` in, closing the full one first. */
  const sliceFor = async (entryBytes: number): Promise<Slice> => {
    if (slice && !slice.fits(entryBytes, limits)) {
      await slice.close();
      slice = undefined;
    }
    if (!slice) {
      const uri = `part.${parts++}.tar`;
      slice = new Slice(path.join(outDir, uri), uri);
      files.push(slice.handed); // hand-over order = creation order; size/sha256 filled on close
    }
    return slice;
  };

  try {
    for await (const item of walkBundle(opts.dataDir, opts.profile)) {
      signal?.throwIfAborted();
      if (item.type === 'skipped') {
        skipped.push({ path: item.path, reason: item.reason });
        continue;
      }
      if (item.kind === 'dir') {
        await (await sliceFor(tarEntryBytes(item.path, 0))).addDir(item);
        totals.dirs++;
        continue;
      }
      // Re-open and re-stat: the file may have changed since the walk listed it.
      const src = await openSource(item.absPath);
      if ('skip' in src) {
        skipped.push({ path: item.path, reason: src.skip });
        continue;
      }
      try {
        let size: number;
        if (src.size > limits.bigFileBytes) {
          size = await packBigFile(src.fh, item.path, src, bigs++, outDir, files, progress, signal);
        } else {
          const s = await sliceFor(tarEntryBytes(item.path, src.size));
          await s.addFile(item.path, src.fh, src.size, src.mode, src.mtimeMs, progress);
          size = src.size;
        }
        totals.files++;
        totals.bytes += size;
      } finally {
        await src.fh.close();
      }
    }
    if (slice) await slice.close();
    slice = undefined;
  } catch (err) {
    // When writing a slice fails (say ENOSPC), tar-stream only tells the entry
    // that its stream was destroyed: report the system error instead.
    const writeErr = await slice?.abort(err);
    throw isSystemError(writeErr) ? writeErr : err;
  }

  const index: ManageIndex = {
    version: INDEX_VERSION,
    bundleName: opts.bundleName,
    createdAt: new Date().toISOString(),
    files,
    skipped,
    totals,
  };
  const indexPath = path.join(outDir, INDEX_URI);
  await writeAtomically(indexPath, JSON.stringify(index));
  progress.final();
  return { ...totals, handOver: files.length, skipped: skipped.length, indexPath };
}

/**
 * Copies a big file alone into `file.<n>`. A file that changes while being
 * read is recorded as read (size and SHA-256 of the bytes actually copied),
 * which is consistent because nothing else describes its length.
 */
async function packBigFile(
  fh: fsp.FileHandle,
  rel: string,
  st: { mode: number; mtimeMs: number },
  n: number,
  outDir: string,
  files: HandedFile[],
  progress: Progress,
  signal: AbortSignal | undefined,
): Promise<number> {
  const uri = `file.${n}`;
  const outPath = path.join(outDir, uri);
  const hash = createHash('sha256');
  let size = 0;
  try {
    await pipeline(
      fh.createReadStream({ autoClose: false, start: 0 }),
      hashing(hash, (n) => {
        size += n;
        progress.add(0, n);
      }),
      createWriteStream(outPath, { flags: 'wx', mode: FILE_MODE }),
      { signal },
    );
  } catch (err) {
    // An abort mid-file surfaces as the signal's reason, like an abort between entries.
    signal?.throwIfAborted();
    throw err;
  }
  await fsyncPath(outPath);
  const sha256 = hash.digest('hex');
  const entry: IndexEntry = { path: rel, kind: 'file', size: size, mode: st.mode, mtimeMs: st.mtimeMs, sha256 };
  files.push({ uri, kind: 'file', size: size, sha256, entries: [entry] });
  progress.add(1, 0);
  return size;
}

/** write tmp → fsync → rename → fsync the folder, so a reader sees the whole index or none. */
async function writeAtomically(target: string, text: string): Promise<void> {
  const tmp = `${target}.tmp`;
  const fh = await fsp.open(tmp, 'w', FILE_MODE);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, target);
  await fsyncPath(path.dirname(target));
}
