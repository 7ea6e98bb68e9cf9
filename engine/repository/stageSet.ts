/**
 * Lays a backup set folder out in a staging folder the way a snapshot stores
 * it (storedLayout.ts): each bundle's tar slices unpacked into files under
 * `<bundle>/data/`, its big files hard-linked there (copied only when a link
 * cannot be made), the index, manifest, capabilities and summary beside them.
 * Every entry is checked against the bundle's index on the way — name, kind,
 * size and SHA-256, and every slice's and big file's own size and SHA-256 —
 * so nothing that does not match its index is ever stored. Slices are read
 * with the restore's SliceReader, never held whole.
 *
 * Modes and mtimes of the index are applied to what is staged, with the
 * owner's read bit (files) or rwx bits (folders) added so that restic can
 * read what it stores; the index stays the authority on modes at restore. A
 * linked big file keeps the set file's own mode and mtime (changing them
 * would change the set's file too).
 *
 * Staging into a kept tree (stagingCache.ts): a file whose record says it
 * holds the entry's SHA-256, and whose inode, size, mtime and ctime are still
 * the recorded ones (nothing wrote to it since it was checked), is left as it
 * is — a slice entry is still read and checked, only not written again; a big
 * file is not read at all. Its unchanged inode and ctime let restic (given the
 * last snapshot as parent) skip reading it too.
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
import { pruneTree } from './stagingCache.js';
import { DATA_DIR, INDEX_FILE, SET_CAPABILITIES, SET_MANIFEST, SET_SUMMARY, SetSummarySchema, bundleNameProblem, type SetSummary } from './storedLayout.js';

export interface StagedSet {
  summary: SetSummary;
  /** Bundles staged (state done in the summary, with an index). */
  bundles: string[];
  /** Bundles of the summary not staged (not done). */
  notStored: string[];
  /** Files and bytes staged under the bundles' data folders. */
  files: number;
  bytes: number;
  /** Of those, files left as they were in a kept tree (their bytes unchanged). */
  kept: number;
  /** Every staged file (data, and the summary, indexes and manifests), by path relative to the staging folder: what it holds, and its stat when checked. */
  records: StagedRecords;
}

/** A staged file's SHA-256 and its lstat (inode, size, mtime and ctime in ns) after it was checked. */
export interface StagedRecord {
  sha256: string;
  ino: string;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
}
export type StagedRecords = Map<string, StagedRecord>;

export interface StageOptions {
  /** Replaces the summary's fields in the staged backup_set.json (the base by snapshot). */
  summaryPatch?: (summary: SetSummary) => SetSummary;
  signal?: AbortSignal;
  /**
   * Staging into a kept tree (stagingCache.ts): its records (files still
   * matching one are not written again). Big files are then copied (or moved,
   * with `moveBigFiles`), never linked: a link shares the set file's inode,
   * whose ctime moves when the set is removed, and restic would read it again.
   */
  previous?: StagedRecords;
  /** The set is given up after the store (a run's private set): its big files may be moved into the staging tree. */
  moveBigFiles?: boolean;
}

/** Reads and checks `<setDir>/backup_set.json`. */
export async function readSetSummary(setDir: string): Promise<SetSummary> {
  const file = path.join(setDir, SET_SUMMARY);
  let raw: unknown;
  try {
    raw = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (err) {
    throw new SetMismatch(`${setDir} is not a backup set: ${file} cannot be read (${(err as Error).message})`);
  }
  const parsed = SetSummarySchema.safeParse(raw);
  if (!parsed.success) throw new SetMismatch(`${setDir} is not a backup set: ${SET_SUMMARY} is not valid (${parsed.error.issues[0]?.message})`);
  return parsed.data;
}

export async function stageSet(setDir: string, stageDir: string, opts: StageOptions = {}): Promise<StagedSet> {
  const summary = await readSetSummary(setDir);
  const done = summary.bundles.filter((b) => b.state === 'done').map((b) => b.bundleName);
  for (const b of done) {
    const why = bundleNameProblem(b);
    if (why) throw new SetMismatch(`${setDir}: ${why}`, b);
  }
  const staged: Tally = {
    files: 0,
    bytes: 0,
    kept: 0,
    records: new Map(),
    previous: opts.previous ?? new Map(),
    keptTree: opts.previous !== undefined,
    move: opts.moveBigFiles === true,
    stageDir,
    placed: new Set([SET_CAPABILITIES, SET_SUMMARY]),
    madeDirs: new Set(),
    yielder: new LoopYield(),
  };
  for (const bundle of done) {
    opts.signal?.throwIfAborted();
    await stageBundle(path.join(setDir, bundle), path.join(stageDir, bundle), bundle, staged, opts.signal);
  }
  await fsp.copyFile(path.join(setDir, SET_CAPABILITIES), path.join(stageDir, SET_CAPABILITIES)).catch((err: unknown) => {
    throw new SetMismatch(`${setDir} is not a whole backup set: ${SET_CAPABILITIES} cannot be read (${(err as Error).message})`);
  });
  const stored = opts.summaryPatch ? opts.summaryPatch(summary) : summary;
  await writeRecorded(staged, path.join(stageDir, SET_SUMMARY), Buffer.from(JSON.stringify(stored, null, 2)));
  // What the last store staged and this one does not (gone entries, bundles not stored now) must not be stored again.
  if (staged.keptTree) await pruneTree(stageDir, new Set([...staged.placed, ...staged.records.keys()]));
  return {
    summary: stored,
    bundles: done,
    notStored: summary.bundles.filter((b) => b.state !== 'done').map((b) => b.bundleName),
    files: staged.files,
    bytes: staged.bytes,
    kept: staged.kept,
    records: staged.records,
  };
}

interface Tally {
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
async function writeRecorded(staged: Tally, target: string, bytes: Buffer): Promise<void> {
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

async function stageBundle(from: string, to: string, bundle: string, staged: Tally, signal?: AbortSignal): Promise<void> {
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
    else await placeBigFile(path.join(from, f.uri), f, data, bundle, staged);
  }
  await writeRecorded(staged, path.join(to, INDEX_FILE), await fsp.readFile(path.join(from, INDEX_FILE)));
  const manifest = await fsp.readFile(path.join(from, SET_MANIFEST)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  if (manifest) await writeRecorded(staged, path.join(to, SET_MANIFEST), manifest);
  staged.placed.add(path.relative(staged.stageDir, data));
  // Folders last, deepest first: making their contents moved their mtimes.
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

/** Links, moves or copies a big file into place (StageOptions.previous) and checks its bytes against the index. */
async function placeBigFile(file: string, f: HandedFile, data: string, bundle: string, staged: Tally): Promise<void> {
  const bad = (why: string) => new SetMismatch(`${bundle}/${f.uri}: ${why}`, bundle);
  const e = f.entries[0];
  if (f.entries.length !== 1 || !e || e.kind !== 'file') throw bad('a big file must hold exactly one file entry');
  if (f.sha256 !== e.sha256 || f.size !== e.size) throw bad(`the index gives the big file and its entry different sizes or SHA-256`);
  const target = path.join(data, e.path);
  const rel = path.relative(staged.stageDir, target);
  const prev = staged.previous.get(rel);
  if (await stillHolds(target, prev, e.sha256, e.size)) {
    // The kept file was checked against this SHA-256 when staged and nothing wrote to it since: what is stored is what the index says.
    staged.records.set(rel, prev!);
    staged.kept++;
    staged.files++;
    staged.bytes += e.size;
    return;
  }
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
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(target, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  const sha = hash.digest('hex');
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
