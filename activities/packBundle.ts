/**
 * Packs a bundle's data/ folder for hand-over (api.md §9): big files alone as
 * `file.<n>`, everything else (small files and every folder, so empty folders
 * survive) in tar slices `part.<n>.tar`, then the index `manage.json`.
 * Pure Node, no Temporal; data is streamed, never held whole in memory.
 *
 * Resuming (`resume: true`, for a retried attempt after a crash or SIGKILL):
 * every completed output (a closed, fsynced slice or big file) gets a sidecar
 * `<uri>.done.json`, written atomically, holding its index record. A resumed
 * run keeps the outputs up to the last completed slice (and the big files that
 * came before its last entry), re-walks the tree skipping what they cover, and
 * re-uses big files completed after that point when the walk meets them again
 * in the same place. Anything else in the folder is deleted; anything
 * inconsistent means a clean start. The index it writes is the one an
 * uninterrupted run would write (apart from `createdAt`) when the data did not
 * change in between, and consistent with the outputs when it did.
 *
 * Incremental packing (`base`: the previous backup's manifest entries):
 * - a file is packed when it is new (or was not a file in the base), or when
 *   its size or mtime differs from the base's AND its SHA-256 does too (a
 *   different size means different bytes: packed without hashing first);
 * - a file whose size and mtime equal the base's is not even opened: its
 *   manifest entry takes the base's SHA-256;
 * - a file whose bytes hash to the base's SHA-256 is not packed either; when
 *   its mode or mtime differ from the base's it is listed in the index's
 *   `incremental.touched`, so that a merge restore applies the new metadata;
 * - every folder is still packed (cheap, and keeps new empty folders);
 * - base entries that no longer exist as the same kind are listed in
 *   `incremental.deleted` (a folder stands for everything below it).
 * `manifestPath` (with or without a base) receives the new full manifest: every
 * current entry, packed or not. It describes what a restore of the chain
 * holds, so it stays consistent with the outputs when a resumed run finds the
 * tree changed: an entry an earlier attempt packed is recorded as packed, and
 * a file it passed over as unchanged but that changed since is recorded with
 * the base's entry (the restore keeps the base's version; the next increment
 * packs it). Resuming works with a base too: sidecars carry a digest of the
 * base, so they are only re-used against the same one.
 *
 * Files changing under the packer: a file is packed as it is when opened (a
 * change between the walk and the open is simply the newer state; one gone by
 * then is skipped as 'vanished'). A file that changes while it is read is
 * still packed and listed in `skipped` with a reason starting "changed while
 * read" (or "deleted while read"): in a tar slice, whose header already holds
 * the length, as tar does — cut at that length when it grew, zero-padded to it
 * when it shrank; a big file holds at most the length it had when opened. In
 * every case the index records the size and SHA-256 of the bytes actually
 * stored, so the set verifies and restores, and the next backup takes the
 * file again (its recorded mtime is the one from before the change).
 */
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, constants as fsc, createReadStream, createWriteStream, fstatSync, openSync, promises as fsp, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { z } from 'zod';
import { PACK_LIMITS } from '../common/device.js';
import {
  INDEX_URI,
  INDEX_VERSION,
  HandedFileSchema,
  ManageIndexSchema,
  SkippedSchema,
  type Deleted,
  type HandedFile,
  type IndexEntry,
  type ManageIndex,
  type Skipped,
} from '../common/manageIndex.js';
import type { ManifestEntry } from '../common/manifest.js';
import { sliceEntryHeader } from '../engine/formats/sliceEntry.js';
import { ManifestWriter } from './manifest.js';
import { Pacer } from './pacer.js';
import { specialKind, walkBundle, type WalkEntry, type WalkProfile } from './walkBundle.js';

export type PackLimits = { -readonly [K in keyof typeof PACK_LIMITS]: number };

/**
 * - verify: a resumed run re-checks the outputs an earlier attempt completed;
 * - scan: it walks past the entries those outputs already hold;
 * - pack: packing new entries.
 */
export type PackPhase = 'verify' | 'scan' | 'pack';

export interface PackProgress {
  /** Files and bytes packed so far (kept outputs of an earlier attempt included). */
  files: number;
  bytes: number;
  phase: PackPhase;
  /**
   * Completed outputs (slices and big files) a retried attempt would keep.
   * During 'verify', the number of earlier outputs re-checked so far.
   */
  durable: number;
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
  /**
   * Keep what an earlier, interrupted run into the same outDir completed and
   * pack only the rest. Default false: empty outDir and start over.
   */
  resume?: boolean;
  /**
   * The previous backup's manifest entries (readManifest(...).entries): pack
   * only what is new or changed since, and record what was deleted.
   */
  base?: Map<string, ManifestEntry>;
  /** The base backup's time (its manifest header's `time`, seconds), recorded as `incremental.baseTime`. Default 0. */
  baseTime?: number;
  /** Where to write the new full manifest (atomically, 0600). Works for full backups too. */
  manifestPath?: string;
  /** This backup's time for the manifest header, seconds since the epoch. Default: now. */
  time?: number;
}

export interface PackSummary {
  files: number;
  dirs: number;
  bytes: number;
  /** Number of HandedFile records (slices and big files), not counting manage.json. */
  handOver: number;
  skipped: number;
  indexPath: string;
  /** Only with `resume`: what was kept from an earlier attempt, or why it was not. */
  resumed?: { kept: number; reused: number } | { restartedBecause: string };
  /*
   * The next three are there when the run is part of an incremental chain
   * (`base` or `manifestPath` given), so that plain full runs keep their summary.
   */
  /** Files packed (handed over): equals `files`. */
  changed?: number;
  /** Files not packed because the base holds their bytes (0 without a base); touched files included. */
  unchanged?: number;
  /** Records in `incremental.deleted` (0 without a base). */
  deleted?: number;
  /** Where the new manifest was written, with `manifestPath`. */
  manifestPath?: string;
}

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const PROGRESS_EVERY_MS = 250;
const BLOCK = 512;
/** A slice is written about this much at a time. */
const WRITE_BATCH_BYTES = 1 << 20;
const ZEROS = Buffer.alloc(64 * 1024);
/** Files up to this size are read whole by one synchronous read; larger ones are streamed. */
const WHOLE_READ_BYTES = 256 * 1024;

/** What a file looked like when it was opened for packing. */
interface OpenedStat {
  size: number;
  mode: number;
  mtimeMs: number;
  ctimeMs: number;
}

/**
 * Why the bytes packed for a file may not be one moment's state of it: it
 * changed while it was read. Such a file is still packed (the output and its
 * index record describe exactly the bytes stored) and listed in the index's
 * `skipped` with this reason, so the tool is told; the next backup takes it
 * again. undefined: it did not change.
 */
async function changedWhileRead(fh: fsp.FileHandle, opened: OpenedStat, sizeReason?: string): Promise<string | undefined> {
  if (sizeReason) return `changed while read: ${sizeReason}`;
  const now = await fh.stat();
  if (now.nlink === 0) return 'deleted while read (the bytes read stored)';
  if (now.size !== opened.size) return `changed while read: ${opened.size} bytes when opened, ${now.size} now`;
  if (now.mtimeMs !== opened.mtimeMs || now.ctimeMs !== opened.ctimeMs) return 'changed while read: rewritten';
  return undefined;
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

/**
 * Throttles progress reports to one per PROGRESS_EVERY_MS, plus one whenever
 * an output becomes durable and a final one. The first data packed is
 * reported at once; mere walking (tick) reports from PROGRESS_EVERY_MS on.
 */
class Progress {
  files = 0;
  bytes = 0;
  durable = 0;
  phase: PackPhase = 'pack';
  #last = 0;
  readonly #start = Date.now();
  constructor(private readonly report?: (p: PackProgress) => void) {}
  add(files: number, bytes: number): void {
    this.files += files;
    this.bytes += bytes;
    if (Date.now() - this.#last >= PROGRESS_EVERY_MS) this.emit();
  }
  /** Keeps reports (heartbeats) going while nothing is added: walking, verifying. */
  tick(): void {
    if (Date.now() - Math.max(this.#last, this.#start) >= PROGRESS_EVERY_MS) this.emit();
  }
  /** An output became durable: reported at once, so the next heartbeat carries it. */
  completed(): void {
    this.durable++;
    this.emit();
  }
  emit(): void {
    if (!this.report) return;
    this.#last = Date.now();
    this.report({ files: this.files, bytes: this.bytes, phase: this.phase, durable: this.durable });
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

  /**
   * @param pos the slice's place in the index's list of files
   */
  constructor(readonly filePath: string, uri: string, readonly pos: number) {
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
          for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
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
        .entry(sliceEntryHeader({ path: e.path, kind: 'dir', size: 0, mode: e.mode, mtimeMs: e.mtimeMs }), (err) =>
          err ? reject(err) : resolve(),
        )
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
  async addFile(rel: string, fh: fsp.FileHandle, st: OpenedStat, progress: Progress): Promise<string | undefined> {
    const { size, mode, mtimeMs } = st;
    const hash = createHash('sha256');
    let sink!: ReturnType<tar.Pack['entry']>;
    const done = new Promise<void>((resolve, reject) => {
      sink = this.pack.entry(sliceEntryHeader({ path: rel, kind: 'file', size, mode, mtimeMs }), (err) =>
        err ? reject(err) : resolve(),
      );
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
  async addBuffer(rel: string, data: Buffer, sha256: string, mode: number, mtimeMs: number, progress: Progress): Promise<void> {
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

/** outDir exists and is 0700. */
async function ensureOutDir(outDir: string): Promise<void> {
  await fsp.mkdir(outDir, { recursive: true, mode: DIR_MODE });
  await fsp.chmod(outDir, DIR_MODE);
}

/** A clean start: outDir is emptied. */
async function emptyOutDir(outDir: string): Promise<void> {
  for (const name of await fsp.readdir(outDir)) {
    await fsp.rm(path.join(outDir, name), { recursive: true, force: true });
  }
}

// ---- Resuming ---------------------------------------------------------------

const DONE_SUFFIX = '.done.json';
const DONE_VERSION = 1;
const OUTPUT_NAME = /^(?:part\.(0|[1-9]\d*)\.tar|file\.(0|[1-9]\d*))$/;

/**
 * The sidecar `<uri>.done.json` of a completed output. Metadata only.
 * - handed: the output's record in the index, exactly as the index will hold it;
 * - pos: its place in the index's list of files (slices are listed when they
 *   are opened, big files when they are complete, as in an uninterrupted run);
 * - skipped: for a slice, the skipped items that come after the previous
 *   slice's last entry and up to this slice's last entry, in walk order
 *   (so the sidecars of slices 0..k together hold every skipped item up to
 *   slice k's last entry); empty for a big file;
 * - config: a digest of what decides the output (bundle, data folder,
 *   profile, limits); a sidecar made under another one is not used.
 * The walk position an output covers is its last entry's path.
 */
const DoneSchema = z.object({
  version: z.literal(DONE_VERSION),
  config: z.string(),
  pos: z.number().int().nonnegative(),
  skipped: z.array(SkippedSchema),
  handed: HandedFileSchema,
});
type Done = z.infer<typeof DoneSchema>;

function configDigest(opts: PackOptions, limits: PackLimits): string {
  const key = JSON.stringify({
    bundleName: opts.bundleName,
    dataDir: path.resolve(opts.dataDir),
    includes: opts.profile.includes ?? null,
    excludes: opts.profile.excludes,
    limits: [limits.bigFileBytes, limits.sliceBytes, limits.sliceEntries],
    // Outputs of an incremental run depend on its base; full runs keep the digest they always had.
    ...(opts.base ? { base: baseDigest(opts.base) } : {}),
  });
  return createHash('sha256').update(key).digest('hex');
}

function baseDigest(base: Map<string, ManifestEntry>): string {
  const hash = createHash('sha256');
  for (const e of base.values()) hash.update(JSON.stringify([e.path, e.kind, e.mode, e.size, e.mtimeMs, e.sha256])).update('\n');
  return hash.digest('hex');
}

/** Key ordering paths the way walkBundle yields them: per component, by UTF-8 bytes, a folder before its contents. */
function walkKey(p: string): Buffer {
  return Buffer.from(p.replaceAll('/', '\0'));
}

function lastPath(handed: HandedFile): string {
  return handed.entries.at(-1)!.path;
}

async function writeDone(outDir: string, done: Omit<Done, 'version'>): Promise<void> {
  // Atomic but not synced: a sidecar lost to a machine crash only means repacking that output.
  await writeAtomically(path.join(outDir, done.handed.uri + DONE_SUFFIX), JSON.stringify({ version: DONE_VERSION, ...done }), false);
}

/** What a resumed run starts from. */
interface ResumeState {
  /** Index records of the kept outputs, in index order. */
  files: HandedFile[];
  skipped: Skipped[];
  /** Walk position they cover: entries and skipped items up to here are done. */
  after?: string;
  parts: number;
  bigs: number;
  /** Big files completed beyond `after`, numbered on from `bigs`, to re-use when the walk meets them again. */
  pending: Done[];
}

type Verdict<T> = { ok: true; value: T } | { ok: false; why: string };

/**
 * Reads and checks the sidecars in outDir and deletes every other file there.
 * Returns why not when something does not add up; the caller then starts clean.
 */
async function loadResumeState(outDir: string, config: string, progress: Progress, signal?: AbortSignal): Promise<Verdict<ResumeState>> {
  const names = await fsp.readdir(outDir);
  const partsByN = new Map<number, Done>();
  const bigsByN = new Map<number, Done>();
  const nameSet = new Set(names);
  for (const name of names) {
    if (!name.endsWith(DONE_SUFFIX)) continue;
    const uri = name.slice(0, -DONE_SUFFIX.length);
    const m = OUTPUT_NAME.exec(uri);
    if (!m) continue; // a stray file: deleted below
    let done: Done;
    try {
      done = DoneSchema.parse(JSON.parse(await fsp.readFile(path.join(outDir, name), 'utf8')));
    } catch (err) {
      return { ok: false, why: `${name} is unreadable: ${(err as Error).message}` };
    }
    const h = done.handed;
    if (done.config !== config) return { ok: false, why: `${name} was made with another profile or limits` };
    if (h.uri !== uri) return { ok: false, why: `${name} describes ${h.uri}` };
    if (!nameSet.has(uri)) return { ok: false, why: `${uri} is missing` };
    if (m[1] !== undefined) {
      if (h.kind !== 'tar' || h.entries.length === 0) return { ok: false, why: `${name} is not a slice's` };
      partsByN.set(Number(m[1]), done);
    } else {
      if (h.kind !== 'file' || h.entries.length !== 1 || h.entries[0]!.kind !== 'file' || done.skipped.length > 0) {
        return { ok: false, why: `${name} is not a big file's` };
      }
      bigsByN.set(Number(m[2]), done);
    }
  }
  // Outputs complete in order: the sidecars must be numbered without gaps.
  const inOrder = (byN: Map<number, Done>): Done[] | undefined => {
    const list = Array.from({ length: byN.size }, (_, i) => byN.get(i));
    return list.every((d) => d !== undefined) ? (list as Done[]) : undefined;
  };
  const parts = inOrder(partsByN);
  const bigs = inOrder(bigsByN);
  if (!parts || !bigs) return { ok: false, why: 'completed outputs are not numbered 0, 1, 2…' };

  const lastPart = parts.at(-1);
  const after = lastPart && lastPath(lastPart.handed);
  const afterKey = after === undefined ? undefined : walkKey(after);
  const covered = (p: string) => afterKey !== undefined && Buffer.compare(walkKey(p), afterKey) <= 0;
  const keptBigs = bigs.filter((b) => covered(lastPath(b.handed)));
  const pending = bigs.slice(keptBigs.length);
  if (pending.some((b) => covered(lastPath(b.handed)))) return { ok: false, why: 'big files out of walk order' };
  const kept = [...parts, ...keptBigs].sort((a, b) => a.pos - b.pos);
  if (kept.some((d, i) => d.pos !== i)) return { ok: false, why: 'outputs out of index order' };
  const skipped = parts.flatMap((p) => p.skipped);
  if (!skipped.every((s) => covered(s.path))) return { ok: false, why: 'skipped items beyond the last slice' };
  for (let i = 1; i < skipped.length; i++) {
    if (Buffer.compare(walkKey(skipped[i - 1]!.path), walkKey(skipped[i]!.path)) >= 0) return { ok: false, why: 'skipped items out of order' };
  }

  // Everything else is an output an attempt did not finish, a temporary file or a stale index.
  const keep = new Set([...kept, ...pending].flatMap((d) => [d.handed.uri, d.handed.uri + DONE_SUFFIX]));
  for (const name of names) {
    if (!keep.has(name)) await fsp.rm(path.join(outDir, name), { recursive: true, force: true });
  }

  // Re-check every kept output against its record: length and SHA-256.
  progress.phase = 'verify';
  for (const d of [...kept, ...pending]) {
    const p = path.join(outDir, d.handed.uri);
    const hash = createHash('sha256');
    try {
      const st = await fsp.lstat(p);
      if (!st.isFile() || st.size !== d.handed.size) return { ok: false, why: `${d.handed.uri} has ${st.size} bytes, not ${d.handed.size}` };
      for await (const chunk of createReadStream(p) as AsyncIterable<Buffer>) {
        signal?.throwIfAborted();
        hash.update(chunk);
        progress.tick();
      }
    } catch (err) {
      signal?.throwIfAborted();
      return { ok: false, why: `${d.handed.uri} cannot be read: ${(err as Error).message}` };
    }
    if (hash.digest('hex') !== d.handed.sha256) return { ok: false, why: `${d.handed.uri} does not match its SHA-256` };
    progress.durable++;
    progress.tick();
  }

  return {
    ok: true,
    value: {
      files: kept.map((d) => d.handed),
      skipped,
      after,
      parts: parts.length,
      bigs: keptBigs.length,
      pending,
    },
  };
}

/**
 * Opens a file to pack without following a symlink that replaced it, and
 * without blocking on a FIFO that did; then checks it is still a regular file.
 * Returns the reason to skip it instead when it vanished or cannot be read.
 */
async function openSource(absPath: string): Promise<({ fh: fsp.FileHandle } & OpenedStat) | { skip: string }> {
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
  return { fh, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

/**
 * Reads a small file whole, without following a symlink that replaced it or
 * blocking on a FIFO. Synchronous on purpose: a page-cache read of a few KiB
 * costs less than the thread-pool round trips of a stream, and the Pacer
 * yields the event loop often enough. Memory is bounded by `maxBytes`
 * (WHOLE_READ_BYTES at most): a file found larger, or growing past it, is
 * 'big' and streamed instead. The bytes returned are the bytes recorded: a file that
 * changed meanwhile is stored as read, never with a header that lies.
 */
function readSmallFile(absPath: string, maxBytes: number): { data: Buffer; mode: number; mtimeMs: number; changed?: string } | { skip: string } | 'big' {
  let fd: number;
  try {
    fd = openSync(absPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return { skip: code === 'ENOENT' ? 'vanished' : code === 'ELOOP' ? 'symlink' : code };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { skip: specialKind(st) };
    if (st.size > maxBytes) return 'big';
    let buf = Buffer.allocUnsafe(st.size + 1); // one byte more tells at once whether it grew
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, n);
      if (r === 0) break;
      n += r;
      if (n < buf.length) continue;
      if (n > maxBytes) return 'big';
      const grown = Buffer.allocUnsafe(Math.min(maxBytes + 1, buf.length * 2));
      buf.copy(grown, 0, 0, n);
      buf = grown;
    }
    const now = fstatSync(fd);
    const changed =
      n !== st.size
        ? `changed while read: ${st.size} bytes when opened, ${n} read and stored`
        : now.nlink === 0
          ? 'deleted while read (the bytes read stored)'
          : now.size !== st.size || now.mtimeMs !== st.mtimeMs || now.ctimeMs !== st.ctimeMs
            ? 'changed while read: rewritten'
            : undefined;
    return { data: buf.subarray(0, n), mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, changed };
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 of exactly `size` bytes of an open file, or undefined when it does not hold that many now. */
async function hashOpenFile(fh: fsp.FileHandle, size: number, progress: Progress, signal?: AbortSignal): Promise<string | undefined> {
  const hash = createHash('sha256');
  let read = 0;
  for await (const chunk of fh.createReadStream({ autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
    signal?.throwIfAborted();
    read += chunk.length;
    if (read > size) return undefined;
    hash.update(chunk);
    progress.tick();
  }
  return read === size ? hash.digest('hex') : undefined;
}

/**
 * The manifest and incremental bookkeeping of one run: every entry the
 * restore of this backup will hold goes through `record`, in walk order.
 */
class Tracker {
  readonly touched: IndexEntry[] = [];
  unchanged = 0;
  /** Kinds of the recorded entries (only with a base: for the deletions). */
  readonly #present?: Map<string, IndexEntry['kind']>;

  constructor(
    readonly base: Map<string, ManifestEntry> | undefined,
    readonly writer: ManifestWriter | undefined,
  ) {
    if (base) this.#present = new Map();
  }

  async record(e: IndexEntry): Promise<void> {
    await this.writer?.add(e);
    this.#present?.set(e.path, e.kind);
  }

  /** A file whose bytes are the base's: recorded with the base's hash and its current mode and mtime. */
  async recordUnchanged(meta: { path: string; mode: number; mtimeMs: number }, b: ManifestEntry): Promise<void> {
    const e: IndexEntry = { path: meta.path, kind: 'file', size: b.size, mode: meta.mode, mtimeMs: meta.mtimeMs, sha256: b.sha256 };
    if (e.mode !== b.mode || e.mtimeMs !== b.mtimeMs) this.touched.push(e);
    this.unchanged++;
    await this.record(e);
  }

  /** Base entries not recorded as the same kind; below a deleted folder only the folder. */
  deletions(): Deleted[] {
    if (!this.base || !this.#present) return [];
    const gone: Deleted[] = [];
    const goneDirs = new Set<string>();
    for (const [p, b] of this.base) {
      if (this.#present.get(p) === b.kind) continue;
      gone.push({ path: p, kind: b.kind });
      if (b.kind === 'dir') goneDirs.add(p);
    }
    const underGoneDir = (p: string) => {
      for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) if (goneDirs.has(p.slice(0, i))) return true;
      return false;
    };
    return gone.filter((d) => !underGoneDir(d.path));
  }
}

export async function packBundle(opts: PackOptions): Promise<PackSummary> {
  const limits: PackLimits = { ...PACK_LIMITS, ...opts.limits };
  const { outDir, signal } = opts;
  signal?.throwIfAborted();
  const config = configDigest(opts, limits);
  const progress = new Progress(opts.onProgress);
  const pacer = new Pacer();
  await ensureOutDir(outDir);

  let resumed: ResumeState | undefined;
  let restartedBecause: string | undefined;
  if (opts.resume) {
    const verdict = await loadResumeState(outDir, config, progress, signal);
    if (verdict.ok) resumed = verdict.value;
    else restartedBecause = verdict.why;
  }
  if (!resumed) await emptyOutDir(outDir);

  const files: HandedFile[] = resumed?.files ?? [];
  const skipped: Skipped[] = resumed?.skipped ?? [];
  const totals = { files: 0, dirs: 0, bytes: 0 };
  for (const e of files.flatMap((f) => f.entries)) {
    if (e.kind === 'dir') totals.dirs++;
    else {
      totals.files++;
      totals.bytes += e.size;
    }
  }
  progress.files = totals.files;
  progress.bytes = totals.bytes;
  progress.durable = files.length;
  const kept = files.length;
  let parts = resumed?.parts ?? 0;
  let bigs = resumed?.bigs ?? 0;
  const pending = resumed?.pending ?? [];
  // Walk items up to here are in the kept outputs (or their skipped lists).
  const afterKey = resumed?.after === undefined ? undefined : walkKey(resumed.after);
  progress.phase = afterKey ? 'scan' : 'pack';
  /** skipped[0, skippedMark) are recorded in slice sidecars already. */
  let skippedMark = skipped.length;
  let slice: Slice | undefined;
  let reused = 0;

  const base = opts.base;
  const writer = opts.manifestPath
    ? await ManifestWriter.open(opts.manifestPath, { bundleName: opts.bundleName, time: opts.time ?? Math.floor(Date.now() / 1000) })
    : undefined;
  const track = base || writer ? new Tracker(base, writer) : undefined;
  /** Entries of the kept outputs in walk order, recorded as the walk passes their place. */
  const keptEntries = track ? files.flatMap((f) => f.entries).sort((a, b) => Buffer.compare(walkKey(a.path), walkKey(b.path))) : [];
  let nextKept = 0;
  const recordKeptBefore = async (key?: Buffer) => {
    while (nextKept < keptEntries.length && (key === undefined || Buffer.compare(walkKey(keptEntries[nextKept]!.path), key) < 0)) {
      await track!.record(keptEntries[nextKept++]!);
    }
  };

  /**
   * An entry an earlier attempt walked past without packing it (resume only):
   * recorded as what the restore will hold, which is the base's version.
   */
  const recordPassedOver = async (item: WalkEntry) => {
    const b = base?.get(item.path);
    if (!track || b?.kind !== item.kind) return; // new since the base: in no output, so not in the restore
    if (b.kind === 'dir') return track.record(b);
    if (b.size === item.size && b.mtimeMs === item.mtimeMs) return track.recordUnchanged(item, b);
    const src = await openSource(item.absPath);
    if ('skip' in src) return track.record(b);
    try {
      if (src.size === b.size && (await hashOpenFile(src.fh, src.size, progress, signal)) === b.sha256) {
        return track.recordUnchanged({ path: item.path, mode: src.mode, mtimeMs: src.mtimeMs }, b);
      }
      return track.record(b); // changed after the earlier attempt passed it over
    } finally {
      await src.fh.close();
    }
  };

  /** Big files of an earlier attempt that the walk does not meet again in the same place are dropped. */
  const dropPending = async () => {
    for (const d of pending.splice(0)) {
      await fsp.rm(path.join(outDir, d.handed.uri + DONE_SUFFIX), { force: true });
      await fsp.rm(path.join(outDir, d.handed.uri), { force: true });
    }
  };

  const closeSlice = async (s: Slice) => {
    await s.close();
    slice = undefined;
    const last = walkKey(lastPath(s.handed));
    let end = skippedMark;
    while (end < skipped.length && Buffer.compare(walkKey(skipped[end]!.path), last) <= 0) end++;
    await writeDone(outDir, { config, pos: s.pos, skipped: skipped.slice(skippedMark, end), handed: s.handed });
    skippedMark = end;
    progress.completed();
  };

  /** The slice to put an entry of `entryBytes` in, closing the full one first. */
  const sliceFor = async (entryBytes: number): Promise<Slice> => {
    if (slice && !slice.fits(entryBytes, limits)) await closeSlice(slice);
    if (!slice) {
      const uri = `part.${parts++}.tar`;
      slice = new Slice(path.join(outDir, uri), uri, files.length);
      files.push(slice.handed); // hand-over order = creation order; size/sha256 filled on close
    }
    return slice;
  };

  try {
    for await (const item of walkBundle(opts.dataDir, opts.profile)) {
      signal?.throwIfAborted();
      progress.tick();
      const key = walkKey(item.path);
      if (afterKey && Buffer.compare(key, afterKey) <= 0) {
        // Packed by an earlier attempt, or passed over by it.
        if (track) {
          await recordKeptBefore(key);
          const k = keptEntries[nextKept];
          if (k && k.path === item.path) {
            nextKept++;
            await track.record(k);
          } else if (item.type === 'entry') {
            await recordPassedOver(item);
          }
        }
        continue;
      }
      if (track) await recordKeptBefore();
      progress.phase = 'pack';
      const turn = pacer.due();
      if (turn) await turn;
      const next = pending[0];
      if (next && Buffer.compare(key, walkKey(lastPath(next.handed))) >= 0) {
        if (item.type === 'entry' && item.kind === 'file' && item.path === lastPath(next.handed)) {
          // A big file an earlier attempt completed after the last slice it kept (numbered `bigs`, as
          // pending files are used in order). If the tree changed before it, its place in the index
          // may have too: record the new one, so that a later resume finds the sidecars in order.
          pending.shift();
          if (next.pos !== files.length) await writeDone(outDir, { ...next, pos: files.length });
          reused++;
          files.push(next.handed);
          await track?.record(next.handed.entries[0]!);
          bigs++;
          totals.files++;
          totals.bytes += next.handed.size;
          progress.add(1, next.handed.size);
          progress.completed();
          continue;
        }
        await dropPending(); // the tree changed: big files would be numbered differently now
      }
      if (item.type === 'skipped') {
        skipped.push({ path: item.path, reason: item.reason });
        continue;
      }
      if (item.kind === 'dir') {
        const s = await sliceFor(tarEntryBytes(item.path, 0));
        await s.addDir(item);
        await track?.record(s.handed.entries.at(-1)!);
        totals.dirs++;
        continue;
      }
      const b = base?.get(item.path);
      if (track && b?.kind === 'file' && b.size === item.size && b.mtimeMs === item.mtimeMs) {
        await track.recordUnchanged(item, b); // not opened, not read
        continue;
      }
      // A small file, read whole by one synchronous read: far cheaper than a stream per file.
      const wholeRead = Math.min(limits.bigFileBytes, WHOLE_READ_BYTES);
      const small = item.size <= wholeRead ? readSmallFile(item.absPath, wholeRead) : 'big';
      if (small !== 'big') {
        if ('skip' in small) {
          skipped.push({ path: item.path, reason: small.skip });
          continue;
        }
        const sha256 = createHash('sha256').update(small.data).digest('hex');
        // Size or mtime moved: packed unless the bytes are still the base's.
        if (track && b?.kind === 'file' && b.size === small.data.length && b.sha256 === sha256) {
          await track.recordUnchanged({ path: item.path, mode: small.mode, mtimeMs: small.mtimeMs }, b);
          continue;
        }
        const s = await sliceFor(tarEntryBytes(item.path, small.data.length));
        await s.addBuffer(item.path, small.data, sha256, small.mode, small.mtimeMs, progress);
        if (small.changed) skipped.push({ path: item.path, reason: small.changed });
        await track?.record(s.handed.entries.at(-1)!);
        totals.files++;
        totals.bytes += small.data.length;
        continue;
      }
      // Re-open and re-stat: the file may have changed since the walk listed it.
      const src = await openSource(item.absPath);
      if ('skip' in src) {
        skipped.push({ path: item.path, reason: src.skip });
        continue;
      }
      try {
        // Size or mtime moved: packed unless the bytes are still the base's (a different size means they are not).
        if (track && b?.kind === 'file' && b.size === src.size && (await hashOpenFile(src.fh, src.size, progress, signal)) === b.sha256) {
          await track.recordUnchanged({ path: item.path, mode: src.mode, mtimeMs: src.mtimeMs }, b);
          continue;
        }
        let size: number;
        let changed: string | undefined;
        if (src.size > limits.bigFileBytes) {
          await dropPending(); // its number is taken by this one
          let handed: HandedFile;
          ({ handed, changed } = await packBigFile(src.fh, item.path, src, bigs++, outDir, progress, signal));
          await writeDone(outDir, { config, pos: files.length, skipped: [], handed });
          files.push(handed);
          progress.completed();
          size = handed.size;
          await track?.record(handed.entries[0]!);
        } else {
          const s = await sliceFor(tarEntryBytes(item.path, src.size));
          changed = await s.addFile(item.path, src.fh, src, progress);
          size = src.size;
          await track?.record(s.handed.entries.at(-1)!);
        }
        if (changed) skipped.push({ path: item.path, reason: changed });
        totals.files++;
        totals.bytes += size;
      } finally {
        await src.fh.close();
      }
    }
    if (slice) await closeSlice(slice);
    await dropPending();
    if (track) await recordKeptBefore(); // kept entries the walk no longer reaches
  } catch (err) {
    await writer?.abort();
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
  const deleted = track?.deletions() ?? [];
  if (base) index.incremental = { baseTime: opts.baseTime ?? 0, deleted, touched: track!.touched };
  if (writer) {
    try {
      await writer.close();
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }
  const indexPath = path.join(outDir, INDEX_URI);
  // Atomic, not synced: the index lives in the transient transfer area and a retried pack rewrites it.
  await writeAtomically(indexPath, JSON.stringify(index), false);
  progress.phase = 'pack';
  progress.emit();
  const summary: PackSummary = {
    ...totals,
    handOver: files.length,
    skipped: skipped.length,
    indexPath,
  };
  if (track) Object.assign(summary, { changed: totals.files, unchanged: track.unchanged, deleted: deleted.length });
  if (writer) summary.manifestPath = writer.target;
  if (opts.resume) {
    summary.resumed = resumed ? { kept, reused } : { restartedBecause: restartedBecause ?? 'unknown' };
  }
  return summary;
}

/**
 * Copies a big file alone into `file.<n>`: at most the `st.size` bytes it had
 * when opened, so a file that keeps growing cannot hold the pack up. Its
 * record describes the bytes copied (all of them when it shrank meanwhile);
 * `changed` says why they may not be one moment's state of the file.
 */
async function packBigFile(
  fh: fsp.FileHandle,
  rel: string,
  st: OpenedStat,
  n: number,
  outDir: string,
  progress: Progress,
  signal: AbortSignal | undefined,
): Promise<{ handed: HandedFile; changed?: string }> {
  const uri = `file.${n}`;
  const outPath = path.join(outDir, uri);
  const hash = createHash('sha256');
  let size = 0;
  try {
    // MiB-sized chunks: a big file costs a few dozen thread-pool round trips, not thousands.
    await pipeline(
      fh.createReadStream({ autoClose: false, start: 0, end: st.size - 1, highWaterMark: WRITE_BATCH_BYTES }),
      hashing(hash, (n) => {
        size += n;
        progress.add(0, n);
      }),
      createWriteStream(outPath, { flags: 'wx', mode: FILE_MODE, highWaterMark: WRITE_BATCH_BYTES }),
      { signal },
    );
  } catch (err) {
    // An abort mid-file surfaces as the signal's reason, like an abort between entries.
    signal?.throwIfAborted();
    throw err;
  }
  const sha256 = hash.digest('hex');
  const entry: IndexEntry = { path: rel, kind: 'file', size: size, mode: st.mode, mtimeMs: st.mtimeMs, sha256 };
  progress.add(1, 0);
  const changed = await changedWhileRead(fh, st, size < st.size ? `shrank to ${size} bytes, those stored` : undefined);
  return { handed: { uri, kind: 'file', size: size, sha256, entries: [entry] }, changed };
}

/** write tmp → fsync → rename → fsync the folder, so a reader sees the whole index or none. */
async function writeAtomically(target: string, text: string, sync = true): Promise<void> {
  const tmp = `${target}.tmp`;
  const fh = await fsp.open(tmp, 'w', FILE_MODE);
  try {
    await fh.writeFile(text, 'utf8');
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, target);
  if (sync) await fsyncPath(path.dirname(target));
}
