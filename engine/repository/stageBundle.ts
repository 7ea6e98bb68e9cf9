/**
 * One bundle of a set staged (stageSet.ts for what staging is): its slices
 * unpacked into files, its big files placed or, for a bundle staged while its
 * set is still written, checked where they are for the stager to place later,
 * its index and manifest beside them. A job of its own (`stageBundleJob`),
 * so that bundles are staged on the engine's threads (offThread.ts), side by
 * side, each returning what it staged to the store's one tally.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, createReadStream, fchmodSync, fstatSync, futimesSync, lstatSync, openSync, promises as fsp, writeSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { readManageIndex } from '../formats/manageIndex.js';
import { LoopYield } from '../loopYield.js';
import { SliceReader } from '../unpack/sliceReader.js';
import type { HandedFile, IndexEntry, ManageIndex } from '../../common/manageIndex.js';
import { manifestPathProblem } from '../../common/manifest.js';
import { SetMismatch } from './errors.js';
import { DATA_DIR, INDEX_FILE, SET_MANIFEST } from './storedLayout.js';

/** A staged file's SHA-256 and its lstat (inode, size, mtime and ctime in ns) after it was checked. */
export interface StagedRecord {
  sha256: string;
  ino: string;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
}
export type StagedRecords = Map<string, StagedRecord>;

/** One bundle to stage: where from and to, and what the kept tree (if any) held of it. */
export interface StageBundleJob {
  setDir: string;
  stageDir: string;
  bundle: string;
  keptTree: boolean;
  move: boolean;
  /** The kept tree's records under the bundle. */
  previous: Array<[string, StagedRecord]>;
  /** The set is still being written: big files are checked where they are, not placed (StagedBundle.deferred). */
  deferBigFiles: boolean;
}

/** A big file checked where it is in the set, placed by `finish`: its lstat when it was checked. */
export interface DeferredBigFile {
  file: string;
  f: HandedFile;
  checked: StagedRecord;
}

/** What a bundle's staging did: its share of the store's tally, and what it left for the stager. */
export interface StagedBundle {
  files: number;
  bytes: number;
  kept: number;
  records: Array<[string, StagedRecord]>;
  /** Paths staged (relative to the staging folder). */
  placed: string[];
  /** Its folders: their modes and mtimes are set again once deferred big files are placed in them. */
  dirs: IndexEntry[];
  deferred: DeferredBigFile[];
}

/** Stages one bundle with a tally of its own: what a pool thread runs. */
export async function stageBundleJob(job: StageBundleJob, signal?: AbortSignal): Promise<StagedBundle> {
  const staged = newTally(job.stageDir, { previous: new Map(job.previous), keptTree: job.keptTree, move: job.move });
  const early: EarlyBundle = { dirs: [], deferred: [] };
  await stageBundle(path.join(job.setDir, job.bundle), path.join(job.stageDir, job.bundle), job.bundle, staged, signal, early, job.deferBigFiles);
  return {
    files: staged.files,
    bytes: staged.bytes,
    kept: staged.kept,
    records: [...staged.records],
    placed: [...staged.placed],
    dirs: early.dirs,
    deferred: early.deferred,
  };
}

/** What a bundle's staging leaves for the stager to finish. */
type EarlyBundle = Pick<StagedBundle, 'dirs' | 'deferred'>;

export interface Tally {
  files: number;
  bytes: number;
  kept: number;
  records: StagedRecords;
  previous: StagedRecords;
  keptTree: boolean;
  move: boolean;
  stageDir: string;
  /** Paths (relative to stageDir) staged by this store: in a kept tree, everything else is removed. */
  placed: Set<string>;
  madeDirs: Set<string>;
  /** The slices' read buffer, one per store. */
  scratch?: Buffer;
  yielder: LoopYield;
}

export function newTally(stageDir: string, o: { previous: StagedRecords; keptTree: boolean; move: boolean }): Tally {
  return { files: 0, bytes: 0, kept: 0, records: new Map(), ...o, stageDir, placed: new Set(), madeDirs: new Set(), yielder: new LoopYield() };
}

/** Entries up to this size are read whole, checked, then written in one go; larger ones stream. */
const WHOLE_BYTES = 4 << 20;

const recordOf = (st: BigIntStats, sha256: string): StagedRecord => ({
  sha256,
  ino: String(st.ino),
  size: Number(st.size),
  mtimeNs: String(st.mtimeNs),
  ctimeNs: String(st.ctimeNs),
});

async function statRecord(file: string, sha256: string): Promise<StagedRecord> {
  return recordOf(await fsp.lstat(file, { bigint: true }), sha256);
}

/**
 * Writes one of the set's own files (summary, index, manifest) and records
 * it like a data file: a kept tree's record of them is what lets the next
 * increment read its base's manifests from the tree (baseManifests.ts).
 */
export async function writeRecorded(staged: Tally, target: string, bytes: Buffer): Promise<void> {
  await fsp.writeFile(target, bytes, { mode: 0o600 });
  const rel = path.relative(staged.stageDir, target);
  staged.records.set(rel, await statRecord(target, createHash('sha256').update(bytes).digest('hex')));
  staged.placed.add(rel);
}

/** The folder of `target`, made once per store. */
async function makeParent(staged: Tally, target: string): Promise<void> {
  const dir = path.dirname(target);
  if (staged.madeDirs.has(dir)) return;
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  staged.madeDirs.add(dir);
}

/** Runs `make` (which fails with EEXIST when something is at `target`); in a kept tree, whatever is there goes first. */
async function fresh<T>(staged: Tally, target: string, make: () => Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (err) {
    if (!staged.keptTree || (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    await clearTarget(target);
    return make();
  }
}

/** Whether `file` still is what `prev` recorded, holding `sha256`: same inode, size, mtime and ctime. */
async function stillHolds(file: string, prev: StagedRecord | undefined, sha256: string, size: number): Promise<boolean> {
  if (!prev || prev.sha256 !== sha256 || prev.size !== size) return false;
  // One cheap call per kept file, made directly (see writeSmallFile).
  const st = lstatSync(file, { bigint: true, throwIfNoEntry: false });
  const now = st && recordOf(st, sha256);
  return !!now && now.ino === prev.ino && now.size === prev.size && now.mtimeNs === prev.mtimeNs && now.ctimeNs === prev.ctimeNs;
}

/** Makes room for a new file at `target`: whatever is there goes (a kept tree's stale file). */
async function clearTarget(target: string): Promise<void> {
  await fsp.rm(target, { recursive: true, force: true });
}

const fileMode = (mode: number) => (mode & 0o7777) | 0o400;
const dirMode = (mode: number) => (mode & 0o7777) | 0o700;

async function stageBundle(
  from: string,
  to: string,
  bundle: string,
  staged: Tally,
  signal: AbortSignal | undefined,
  early: EarlyBundle,
  defer: boolean,
): Promise<void> {
  let index: ManageIndex;
  try {
    index = await readManageIndex(path.join(from, INDEX_FILE));
  } catch (err) {
    throw new SetMismatch(`${bundle}: its index ${path.join(from, INDEX_FILE)} cannot be read: ${(err as Error).message}`, bundle);
  }
  const data = path.join(to, DATA_DIR);
  await fsp.mkdir(data, { recursive: true, mode: 0o700 });
  const dirs: IndexEntry[] = [];
  const seen = new Set<string>();
  for (const f of index.files) {
    signal?.throwIfAborted();
    for (const e of f.entries) {
      const why = manifestPathProblem(e.path);
      if (why) throw new SetMismatch(`${bundle}: the index lists "${e.path}" (${why})`, bundle);
      if (seen.has(e.path)) throw new SetMismatch(`${bundle}: the index lists ${e.path} twice`, bundle);
      seen.add(e.path);
    }
    if (f.kind === 'tar') await unpackSlice(path.join(from, f.uri), f, data, bundle, dirs, staged, signal);
    else if (defer) await checkBigFile(path.join(from, f.uri), f, data, bundle, staged, early);
    else await placeBigFile(path.join(from, f.uri), f, data, bundle, staged);
  }
  await writeRecorded(staged, path.join(to, INDEX_FILE), await fsp.readFile(path.join(from, INDEX_FILE)));
  const manifest = await fsp.readFile(path.join(from, SET_MANIFEST)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  if (manifest) await writeRecorded(staged, path.join(to, SET_MANIFEST), manifest);
  staged.placed.add(path.relative(staged.stageDir, data));
  await setFolders(data, dirs);
  early.dirs = dirs;
}

/** Folders' modes and mtimes, last and deepest first: making their contents moved their mtimes. */
async function setFolders(data: string, dirs: IndexEntry[]): Promise<void> {
  dirs.sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const d of dirs) {
    const p = path.join(data, d.path);
    await fsp.chmod(p, dirMode(d.mode));
    await fsp.utimes(p, d.mtimeMs / 1000, d.mtimeMs / 1000);
  }
}

/**
 * Writes a small checked entry with plain system calls, no round trips
 * through the thread pool: these are writes into the page cache, a few
 * microseconds each, while six awaited calls a file (open, write, chmod,
 * utimes, stat, close) were most of a big set's staging time. The event
 * loop is still served between the slice's reads.
 */
function writeSmallFile(target: string, bytes: Buffer, e: IndexEntry, sha256: string): StagedRecord {
  const fd = openSync(target, 'wx', 0o600);
  try {
    for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off, bytes.length - off);
    fchmodSync(fd, fileMode(e.mode));
    futimesSync(fd, e.mtimeMs / 1000, e.mtimeMs / 1000);
    return recordOf(fstatSync(fd, { bigint: true }), sha256);
  } finally {
    closeSync(fd);
  }
}

/** Read size for slices: the restore's (SliceReader's buffer, one per store). */
const READ_CHUNK = 256 * 1024;

/**
 * Takes one slice apart with the restore's SliceReader (synchronous reads
 * into one buffer, tar-stream's header decoder, every byte hashed as read):
 * tar-stream's extract made a stream, a promise and buffer copies per entry,
 * most of staging's CPU. Each entry is checked against the index as it comes.
 */
async function unpackSlice(
  slicePath: string,
  f: HandedFile,
  data: string,
  bundle: string,
  dirs: IndexEntry[],
  staged: Tally,
  signal?: AbortSignal,
): Promise<void> {
  const bad = (why: string) => new SetMismatch(`${bundle}/${f.uri}: ${why}`, bundle);
  let fd: number;
  try {
    fd = openSync(slicePath, 'r');
  } catch (err) {
    throw bad(`cannot be read as a slice: ${(err as Error).message}`);
  }
  const reader = new SliceReader(fd, (staged.scratch ??= Buffer.allocUnsafe(READ_CHUNK)));
  let i = 0;
  try {
    for (let hd = reader.nextHeader(); hd; hd = reader.nextHeader()) {
      signal?.throwIfAborted();
      const e = f.entries[i++];
      const name = hd.name.replace(/\/$/, '');
      if (!e) throw bad(`holds more entries than the index lists (${name})`);
      if (name !== e.path) throw bad(`entry ${i - 1} is ${name}, the index says ${e.path}`);
      const target = path.join(data, e.path);
      if (e.kind === 'dir') {
        if (hd.type !== 'directory') throw bad(`${e.path} is a ${hd.type} in the slice, a folder in the index`);
        reader.skip(hd.size);
        reader.endEntry(hd.size);
        if (
          staged.keptTree &&
          !(await fsp.lstat(target).then(
            (st) => st.isDirectory(),
            () => true,
          ))
        )
          await clearTarget(target);
        await fsp.mkdir(target, { recursive: true, mode: 0o700 });
        staged.madeDirs.add(target);
        staged.placed.add(path.relative(staged.stageDir, target));
        dirs.push(e);
        continue;
      }
      if (hd.type !== 'file') throw bad(`${e.path} is a ${hd.type} in the slice, a file in the index`);
      if (hd.size !== e.size) throw bad(`${e.path} has ${hd.size} bytes in the slice, ${e.size} in the index`);
      const rel = path.relative(staged.stageDir, target);
      const prev = staged.previous.get(rel);
      const hash = createHash('sha256');
      if (await stillHolds(target, prev, e.sha256, e.size)) {
        // Checked all the same: the slice must hold what its index says.
        for (let left = e.size; left > 0;) {
          const chunk = reader.data(left);
          hash.update(chunk);
          left -= chunk.length;
        }
        reader.endEntry(e.size);
        if (hash.digest('hex') !== e.sha256) throw bad(`${e.path}'s SHA-256 differs from the index`);
        staged.records.set(rel, prev!);
        staged.kept++;
      } else if (e.size <= WHOLE_BYTES) {
        // Small (all of a slice's entries are under the big-file limit): checked whole before a byte is written, one open file.
        // Copied out of the reader's buffer, whose views last only until its next read.
        const bytes = Buffer.allocUnsafe(e.size);
        for (let off = 0; off < e.size;) {
          const chunk = reader.data(e.size - off);
          hash.update(chunk);
          off += chunk.copy(bytes, off);
        }
        reader.endEntry(e.size);
        const sha = hash.digest('hex');
        if (sha !== e.sha256) throw bad(`${e.path}'s SHA-256 differs from the index`);
        await makeParent(staged, target);
        staged.records.set(rel, await fresh(staged, target, async () => writeSmallFile(target, bytes, e, sha)));
      } else {
        await makeParent(staged, target);
        if (staged.keptTree) await clearTarget(target);
        staged.records.set(rel, writeLargeEntry(target, reader, e, hash, bad));
      }
      staged.files++;
      staged.bytes += e.size;
      // The reads and writes are synchronous: the loop (signals, progress, Temporal's heartbeats) still runs every few ms.
      await staged.yielder.due();
    }
  } catch (err) {
    if (err instanceof SetMismatch || signal?.aborted) throw err;
    throw bad(`cannot be read as a slice: ${(err as Error).message}`);
  } finally {
    closeSync(fd);
  }
  if (i !== f.entries.length) throw bad(`holds ${i} entries, the index lists ${f.entries.length}`);
  if (reader.bytes !== f.size) throw bad(`has ${reader.bytes} bytes, the index says ${f.size}`);
  if (reader.digest() !== f.sha256) throw bad(`its SHA-256 differs from the index`);
}

/** An entry too large to hold whole, written as it is read; its SHA-256 checked at the end (a mismatch fails the store, so the file is never stored). */
function writeLargeEntry(target: string, reader: SliceReader, e: IndexEntry, hash: Hash, bad: (why: string) => SetMismatch): StagedRecord {
  const fd = openSync(target, 'wx', 0o600);
  try {
    for (let left = e.size; left > 0;) {
      const chunk = reader.data(left);
      hash.update(chunk);
      left -= chunk.length;
      for (let off = 0; off < chunk.length;) off += writeSync(fd, chunk, off, chunk.length - off);
    }
    reader.endEntry(e.size);
    const sha = hash.digest('hex');
    if (sha !== e.sha256) throw bad(`${e.path}'s SHA-256 differs from the index`);
    fchmodSync(fd, fileMode(e.mode));
    futimesSync(fd, e.mtimeMs / 1000, e.mtimeMs / 1000);
    return recordOf(fstatSync(fd, { bigint: true }), sha);
  } finally {
    closeSync(fd);
  }
}

/** A big file's one entry, where it goes, and its last record (checks the index's two views of it agree). */
function bigFileTarget(f: HandedFile, data: string, bundle: string, staged: Tally) {
  const bad = (why: string) => new SetMismatch(`${bundle}/${f.uri}: ${why}`, bundle);
  const e = f.entries[0];
  if (f.entries.length !== 1 || !e || e.kind !== 'file') throw bad('a big file must hold exactly one file entry');
  if (f.sha256 !== e.sha256 || f.size !== e.size) throw bad(`the index gives the big file and its entry different sizes or SHA-256`);
  const target = path.join(data, e.path);
  const rel = path.relative(staged.stageDir, target);
  return { bad, e, target, rel, prev: staged.previous.get(rel) };
}

/** A kept tree's file that still holds the big file: recorded as it is, true. */
async function keptBigFile(staged: Tally, target: string, rel: string, prev: StagedRecord | undefined, e: IndexEntry): Promise<boolean> {
  if (!(await stillHolds(target, prev, e.sha256, e.size))) return false;
  // The kept file was checked against this SHA-256 when staged and nothing wrote to it since: what is stored is what the index says.
  staged.records.set(rel, prev!);
  staged.kept++;
  staged.files++;
  staged.bytes += e.size;
  return true;
}

/** Size and SHA-256 of a file, read 1 MiB at a time. */
async function hashFile(file: string): Promise<{ size: number; sha: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { size, sha: hash.digest('hex') };
}

/** Checks a big file where it is in the set (a set still being written), for placeDeferred to place. */
async function checkBigFile(file: string, f: HandedFile, data: string, bundle: string, staged: Tally, early: EarlyBundle): Promise<void> {
  const { bad, e, target, rel, prev } = bigFileTarget(f, data, bundle, staged);
  if (await keptBigFile(staged, target, rel, prev, e)) return;
  // Its stat before the read: anything that writes to it after moves its ctime, and placeDeferred reads it again.
  const before = lstatSync(file, { bigint: true, throwIfNoEntry: false });
  if (!before?.isFile()) throw bad('missing from the set');
  const { size, sha } = await hashFile(file);
  if (size !== f.size) throw bad(`has ${size} bytes, the index says ${f.size}`);
  if (sha !== f.sha256) throw bad(`its SHA-256 differs from the index`);
  early.deferred.push({ file, f, checked: recordOf(before, sha) });
}

/** An early bundle's big files placed (read again only if they changed since checked), then its folders set again. */
export async function placeDeferred(early: EarlyBundle, bundle: string, data: string, staged: Tally): Promise<void> {
  for (const d of early.deferred) {
    const unchanged = await stillHolds(d.file, d.checked, d.checked.sha256, d.checked.size);
    await placeBigFile(d.file, d.f, data, bundle, staged, unchanged);
  }
  if (early.deferred.length) await setFolders(data, early.dirs);
}

/**
 * Links, moves or copies a big file into place (StageOptions.previous) and
 * checks its bytes against the index — unless `checked`: the set's file was
 * checked already and is unchanged since, and a link or a move places that
 * very inode (a copy is always read back).
 */
async function placeBigFile(file: string, f: HandedFile, data: string, bundle: string, staged: Tally, checked = false): Promise<void> {
  const { bad, e, target, rel, prev } = bigFileTarget(f, data, bundle, staged);
  if (await keptBigFile(staged, target, rel, prev, e)) return;
  await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  if (staged.keptTree) await clearTarget(target);
  // A link shares the set file (its mode and mtime stay the set's); a moved or copied file is the tree's own.
  const how = !staged.keptTree ? 'link' : staged.move ? 'move' : 'copy';
  let placed = false;
  if (how !== 'copy') {
    try {
      await (how === 'link' ? fsp.link(file, target) : fsp.rename(file, target));
      placed = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw bad('missing from the set');
    }
  }
  if (!placed)
    await fsp.copyFile(file, target, fsp.constants.COPYFILE_EXCL | fsp.constants.COPYFILE_FICLONE).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' ? bad('missing from the set') : err;
    });
  const shared = placed && how === 'link';
  const { size, sha } = checked && placed ? { size: e.size, sha: e.sha256 } : await hashFile(target);
  if (size !== f.size || size !== e.size) throw bad(`has ${size} bytes, the index says ${f.size}`);
  if (sha !== f.sha256 || sha !== e.sha256) throw bad(`its SHA-256 differs from the index`);
  if (!shared) {
    await fsp.chmod(target, fileMode(e.mode));
    await fsp.utimes(target, e.mtimeMs / 1000, e.mtimeMs / 1000);
  }
  staged.records.set(rel, await statRecord(target, sha));
  staged.files++;
  staged.bytes += size;
}
