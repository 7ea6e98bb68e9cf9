/**
 * Unpacks a bundle's restore files (api.md §5 SessionRestore, §7, §9) into a
 * private staging tree, verifies every byte against the index `manage.json`,
 * and only then swaps the tree into the bundle's data/ folder (or, for
 * `fullBackupOnly` profiles, leaves it in the staging folder). Pure Node, no
 * Temporal; streamed, never held whole. The safety rules, merging an increment
 * and crash recovery are specified in docs/design/restoring.md.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants as fsc, fchmodSync, futimesSync, openSync, promises as fsp, writeSync, type Stats } from 'node:fs';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import tar from 'tar-stream';
import { ErrorCode } from '../common/errors.js';
import { INDEX_URI, ManageIndexSchema, type Deleted, type HandedFile, type IndexEntry, type ManageIndex } from '../common/manageIndex.js';

export interface ApplyRestoreOptions {
  bundleName: string;
  /** Where the tool wrote the bundle's files: manage.json plus every uri it lists. */
  restoreDir: string;
  /** The bundle's data folder (<bundle>/data) — the only place restore may change. */
  dataDir: string;
  /** A fresh folder for building the new tree (inside the bundle's backup/restore temp area; created/emptied here). */
  stagingDir: string;
  /**
   * 'apply': swap the verified tree into dataDir; 'tempOnly' (fullBackupOnly profiles): leave the verified tree in stagingDir;
   * 'merge': an increment — the current dataDir plus the increment's changes and deletions, swapped into dataDir.
   */
  mode: 'apply' | 'tempOnly' | 'merge';
  signal?: AbortSignal;
  onProgress?: (p: { files: number; bytes: number }) => void;
}

export interface ApplyRestoreResult {
  files: number;
  dirs: number;
  bytes: number;
  appliedTo: string;
  /** Only for 'merge': files carried over from dataDir (hard-linked, or copied), deletions applied, touched files re-stamped. */
  merged?: { linked: number; copied: number; deleted: number; touched: number };
}

/** The restore files cannot be applied; `code` is the reference's error code (13900020 or 13500008). */
export class RestoreRejected extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'RestoreRejected';
  }
}

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
const ROOT_MODE = 0o700;
/** Only permission bits are restored: set-uid, set-gid and sticky are dropped. */
const PERM_MASK = 0o777;
const PROGRESS_EVERY_MS = 250;
const OLD_INFIX = '.old-';
const OLD_SUFFIX = /^[0-9a-f]{16}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const CREATE_FLAGS = fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY | fsc.O_NOFOLLOW;
const READ_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;
/** Handed files are read this much at a time. */
const READ_CHUNK = 1 << 20;

function untar(message: string): RestoreRejected {
  return new RestoreRejected(ErrorCode.UNTAR_FAILED, message);
}

function invalid(message: string): RestoreRejected {
  return new RestoreRejected(ErrorCode.INVALID_ARGUMENT, message);
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function isInside(child: string, parent: string): boolean {
  return child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

/**
 * Why `name` is not an acceptable relative path inside `root`, or undefined
 * when it is. Used for tar entry names and index paths alike.
 */
export function unsafePathReason(name: string, root: string): string | undefined {
  if (name === '') return 'empty path';
  if (name.includes('\0')) return 'NUL in path';
  if (name.startsWith('/')) return 'absolute path';
  const segments = name.split('/');
  if (segments.includes('')) return 'empty path segment';
  if (segments.includes('..')) return "'..' segment";
  if (segments.includes('.')) return "'.' segment";
  if (path.posix.normalize(name) !== name) return 'not a normalised path';
  if (!isInside(path.resolve(root, name), root)) return 'resolves outside the restore folder';
  return undefined;
}

// ---- Progress -----------------------------------------------------------------

class Progress {
  files = 0;
  bytes = 0;
  #last = 0;
  constructor(private readonly report?: (p: { files: number; bytes: number }) => void) {}
  add(files: number, bytes: number): void {
    this.files += files;
    this.bytes += bytes;
    if (Date.now() - this.#last >= PROGRESS_EVERY_MS) this.emit();
  }
  emit(): void {
    if (!this.report) return;
    this.#last = Date.now();
    this.report({ files: this.files, bytes: this.bytes });
  }
}

// ---- The index ------------------------------------------------------------------

async function readIndex(restoreDir: string): Promise<ManageIndex> {
  const p = path.join(restoreDir, INDEX_URI);
  let text: string;
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(p, READ_FLAGS);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT') throw invalid(`${INDEX_URI} is missing from the restore files`);
    if (code === 'ELOOP') throw invalid(`${INDEX_URI} is a symlink, not a regular file`);
    throw err;
  }
  try {
    if (!(await fh.stat()).isFile()) throw invalid(`${INDEX_URI} is not a regular file`);
    text = await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalid(`${INDEX_URI} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = ManageIndexSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw invalid(`${INDEX_URI} is not a valid index: ${issues.join('; ')}`);
  }
  return parsed.data;
}

interface Plan {
  files: number;
  dirs: number;
  bytes: number;
  /** Folder entries, deepest first. */
  dirEntries: IndexEntry[];
  /** An increment's deletions and touched files. */
  deleted: Deleted[];
  touched: IndexEntry[];
}

/** Checks everything that can be checked from the index alone. */
function validateIndex(index: ManageIndex, stagingDir: string, restoreDir: string): Plan {
  const uris = new Set<string>();
  const kinds = new Map<string, IndexEntry['kind']>();
  const plan: Plan = { files: 0, dirs: 0, bytes: 0, dirEntries: [], deleted: [], touched: [] };
  for (const h of index.files) {
    if (h.uri === '.' || h.uri === '..' || h.uri === INDEX_URI) throw invalid(`${INDEX_URI} lists the reserved uri "${h.uri}"`);
    if (uris.has(h.uri)) throw invalid(`${INDEX_URI} lists "${h.uri}" twice`);
    uris.add(h.uri);
    if (path.resolve(restoreDir, h.uri) === stagingDir) throw invalid(`"${h.uri}" is the staging folder`);
    if (!SHA256_HEX.test(h.sha256)) throw invalid(`${h.uri}: the index's SHA-256 is malformed`);
    if (h.kind === 'file') {
      const e = h.entries[0];
      if (h.entries.length !== 1 || e?.kind !== 'file' || e.size !== h.size || e.sha256 !== h.sha256) {
        throw invalid(`${h.uri}: a big file's record must hold exactly one matching file entry`);
      }
    }
    for (const e of h.entries) {
      const why = unsafePathReason(e.path, stagingDir);
      if (why) throw untar(`${h.uri}: index entry "${e.path}" refused: ${why}`);
      if (kinds.has(e.path)) throw untar(`${h.uri}: index entry "${e.path}" is listed twice`);
      kinds.set(e.path, e.kind);
      if (e.kind === 'file') {
        if (!SHA256_HEX.test(e.sha256)) throw invalid(`${h.uri}: index entry "${e.path}" has a malformed SHA-256`);
        plan.files++;
        plan.bytes += e.size;
      } else {
        if (e.size !== 0) throw invalid(`${h.uri}: folder entry "${e.path}" has a size`);
        plan.dirs++;
        plan.dirEntries.push(e);
      }
    }
  }
  const inc = index.incremental;
  if (inc) {
    const deleted = new Set<string>();
    for (const d of inc.deleted) {
      const why = unsafePathReason(d.path, stagingDir);
      if (why) throw untar(`deleted path "${d.path}" refused: ${why}`);
      if (deleted.has(d.path)) throw invalid(`${INDEX_URI} lists the deleted path "${d.path}" twice`);
      deleted.add(d.path);
    }
    const underDeleted = (p: string) => {
      for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) if (deleted.has(p.slice(0, i))) return true;
      return deleted.has(p);
    };
    for (const t of inc.touched ?? []) {
      const why = unsafePathReason(t.path, stagingDir);
      if (why) throw untar(`touched path "${t.path}" refused: ${why}`);
      if (t.kind !== 'file' || !SHA256_HEX.test(t.sha256)) throw invalid(`touched entry "${t.path}" is not a file with a SHA-256`);
      if (kinds.has(t.path)) throw untar(`index entry "${t.path}" is listed twice`);
      if (underDeleted(t.path)) throw invalid(`touched entry "${t.path}" is deleted too`);
      kinds.set(t.path, 'file');
    }
    plan.deleted = inc.deleted;
    plan.touched = inc.touched ?? [];
  }
  // Nothing may live below a file.
  for (const p of kinds.keys()) {
    for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) {
      if (kinds.get(p.slice(0, i)) === 'file') throw untar(`index entry "${p}" lies below the file "${p.slice(0, i)}"`);
    }
  }
  const depth = (p: string) => p.split('/').length;
  plan.dirEntries.sort((a, b) => depth(b.path) - depth(a.path));
  return plan;
}

// ---- Removing and recovering ---------------------------------------------------

/** Makes every real folder under `p` (and `p`) 0700, never following links, so it can be removed. */
async function makeRemovable(p: string): Promise<void> {
  const st = await lstatOrUndefined(p);
  if (!st?.isDirectory()) return;
  await fsp.chmod(p, DIR_MODE).catch(() => {});
  let names: string[];
  try {
    names = await fsp.readdir(p);
  } catch {
    return;
  }
  for (const name of names) await makeRemovable(path.join(p, name));
}

/** rm -rf that also copes with read-only folders (restored trees may hold some). */
async function removeTree(p: string): Promise<void> {
  try {
    await fsp.rm(p, { recursive: true, force: true });
  } catch (err) {
    const code = errnoOf(err);
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOTEMPTY') throw err;
    await makeRemovable(p);
    await fsp.rm(p, { recursive: true, force: true });
  }
}

async function fsyncDir(p: string): Promise<void> {
  const fh = await fsp.open(p, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * A run that died between `rename(dataDir, old)` and `rename(staging, dataDir)`
 * leaves dataDir missing and an old sibling: put it back. With dataDir present,
 * old siblings are the remains of a finished swap: remove them.
 */
async function recoverInterruptedSwap(dataDir: string): Promise<void> {
  const parent = path.dirname(dataDir);
  const prefix = path.basename(dataDir) + OLD_INFIX;
  let names: string[];
  try {
    names = await fsp.readdir(parent);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return;
    throw err;
  }
  const olds: { p: string; st: Stats }[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !OLD_SUFFIX.test(name.slice(prefix.length))) continue;
    const p = path.join(parent, name);
    const st = await lstatOrUndefined(p);
    if (st) olds.push({ p, st });
  }
  if (olds.length === 0) return;
  if ((await lstatOrUndefined(dataDir)) === undefined) {
    const dirs = olds.filter((o) => o.st.isDirectory()).sort((a, b) => b.st.ctimeMs - a.st.ctimeMs);
    const newest = dirs[0];
    if (newest) {
      await fsp.rename(newest.p, dataDir);
      await fsyncDir(parent);
    }
    for (const o of olds) if (o !== newest) await removeTree(o.p);
    return;
  }
  for (const o of olds) await removeTree(o.p);
}

/** A big file moved from restoreDir into the staging tree; moved back if the build fails. */
interface Moved {
  from: string;
  to: string;
  /** What it had in restoreDir, put back with it. */
  original: Stats;
}

/** Moves a staged big file back to restoreDir when it is a plain regular file there and restoreDir lacks it. */
async function moveBack(to: string, from: string, size: number, original?: Stats): Promise<void> {
  if ((await lstatOrUndefined(from)) !== undefined) return;
  const st = await lstatOrUndefined(to);
  if (!st?.isFile() || st.nlink !== 1 || st.size !== size) return;
  await fsp.rename(to, from);
  // It may carry the restored mode and mtime already; the next attempt must be able to read it.
  await fsp.chmod(from, original ? original.mode & PERM_MASK : FILE_MODE);
  if (original) await fsp.utimes(from, original.atimeMs / 1000, original.mtimeMs / 1000);
}

/** Big files a dead attempt moved into the (stale) staging tree go back to restoreDir before it is emptied. */
async function reclaimBigFiles(index: ManageIndex, restoreDir: string, stagingDir: string): Promise<void> {
  const st = await lstatOrUndefined(stagingDir);
  if (!st?.isDirectory()) return;
  const realStaging = await fsp.realpath(stagingDir);
  for (const h of index.files) {
    if (h.kind !== 'file') continue;
    const rel = h.entries[0]!.path; // validated: exactly one entry, a safe path
    const staged = path.resolve(stagingDir, rel);
    // Only through real folders of the staging tree, never through a link.
    const realParent = await fsp.realpath(path.dirname(staged)).catch(() => undefined);
    if (realParent !== path.dirname(path.resolve(realStaging, rel))) continue;
    await moveBack(staged, path.join(restoreDir, h.uri), h.size).catch(() => {});
  }
}

/** After a failure before the swap: big files back to restoreDir, the staging tree gone. */
async function undoBuild(moved: Moved[], stagingDir: string): Promise<void> {
  for (const m of moved) await moveBack(m.to, m.from, m.original.size, m.original).catch(() => {});
  await removeTree(stagingDir);
}

async function resetStaging(stagingDir: string): Promise<void> {
  const st = await lstatOrUndefined(stagingDir);
  if (st?.isDirectory()) await removeTree(stagingDir);
  else if (st) await fsp.unlink(stagingDir);
  await fsp.mkdir(path.dirname(stagingDir), { recursive: true, mode: DIR_MODE });
  await fsp.mkdir(stagingDir, { mode: DIR_MODE });
  await fsp.chmod(stagingDir, DIR_MODE);
}

// ---- Building the tree -------------------------------------------------------------

/** Transform that hashes and counts what passes through. */
class Hashing extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

async function writeAll(fh: fsp.FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

/** Sets the index's mode and mtime (atime = mtime) through an open descriptor. */
async function applyMeta(fh: fsp.FileHandle, e: IndexEntry): Promise<void> {
  await fh.chmod(e.mode & PERM_MASK);
  const t = e.mtimeMs / 1000;
  await fh.utimes(t, t);
}

/** Whether `p` or one of its ancestors is in `set`. */
function atOrBelow(p: string, set: Set<string>): boolean {
  if (set.has(p)) return true;
  for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) if (set.has(p.slice(0, i))) return true;
  return false;
}

class Builder {
  /** Folders created so far, relative to the staging root ('' is the root). */
  readonly dirs = new Set<string>(['']);
  readonly moved: Moved[] = [];
  /** 'merge' only: folders copied from dataDir, with the mode and mtime they get back at the end (unless the index has them). */
  readonly seededDirs = new Map<string, { mode: number; mtimeMs: number }>();
  readonly merged = { linked: 0, copied: 0, deleted: 0, touched: 0 };

  constructor(
    readonly stagingDir: string,
    readonly restoreDir: string,
    readonly progress: Progress,
    readonly signal: AbortSignal | undefined,
    /** Whatever of the seeded data folder is in the way of an entry is removed (from the staging tree) first. */
    readonly merge = false,
  ) {}

  // ---- merge: seeding, deletions, touched files ----

  /** Copies dataDir into the (empty) staging tree: folders recreated, regular files hard-linked. */
  async seed(dataDir: string): Promise<void> {
    const st = await lstatOrUndefined(dataDir);
    if (!st?.isDirectory()) return; // no data yet (or not a real folder, which 'apply' would replace too)
    await this.seedDir(dataDir, '');
  }

  async seedDir(srcDir: string, rel: string): Promise<void> {
    for (const name of await fsp.readdir(srcDir)) {
      this.checkAbort();
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const src = path.join(srcDir, name);
      const st = await lstatOrUndefined(src);
      if (st?.isDirectory()) {
        await fsp.mkdir(this.abs(childRel), { mode: DIR_MODE });
        this.dirs.add(childRel);
        this.seededDirs.set(childRel, { mode: st.mode & PERM_MASK, mtimeMs: st.mtimeMs });
        await this.seedDir(src, childRel);
        // readdir and link resolve `src` by name: had it been swapped for a symlink meanwhile, what was
        // copied may come from elsewhere. Node has no openat(); refuse rather than guess.
        const now = await lstatOrUndefined(src);
        if (!now?.isDirectory() || now.ino !== st.ino || now.dev !== st.dev) {
          throw Object.assign(new Error(`${src} was replaced while being merged`), { code: 'ECHANGED' });
        }
      } else if (st?.isFile()) {
        await this.linkFromData(src, childRel);
      }
      // Gone meanwhile, a symlink or a special file: not carried over.
      this.progress.add(0, 0);
    }
  }

  async linkFromData(src: string, rel: string): Promise<void> {
    const dest = this.abs(rel);
    try {
      await fsp.link(src, dest); // link(2) does not follow a symlink at src
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT') return; // vanished since the listing
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
      await this.copyFromData(src, dest);
      return;
    }
    // src may have been replaced by a link or a FIFO between lstat and link.
    if (!(await fsp.lstat(dest)).isFile()) await fsp.unlink(dest);
    else this.merged.linked++;
  }

  /** The fallback when a hard link is impossible: a copy read through an O_NOFOLLOW descriptor, with mode and mtime. */
  async copyFromData(src: string, dest: string): Promise<void> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(src, READ_FLAGS);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ELOOP') return;
      throw err;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return;
      const out = await fsp.open(dest, CREATE_FLAGS, FILE_MODE);
      try {
        for await (const chunk of fh.createReadStream({ autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
          this.checkAbort();
          await writeAll(out, chunk);
        }
        await out.chmod(st.mode & PERM_MASK);
        await out.utimes(st.atimeMs / 1000, st.mtimeMs / 1000);
      } finally {
        await out.close();
      }
      this.merged.copied++;
    } finally {
      await fh.close();
    }
  }

  /** Removes whatever is at `rel` in the staging tree (never more: it holds only our folders and regular files). */
  async clear(rel: string): Promise<boolean> {
    const p = this.abs(rel);
    let st: Stats;
    try {
      st = await fsp.lstat(p);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return false;
      throw err;
    }
    if (!st.isDirectory()) {
      await fsp.unlink(p); // only the staged name: a linked inode is not touched
      return true;
    }
    await removeTree(p);
    const gone = new Set([rel]);
    for (const d of this.dirs) {
      if (atOrBelow(d, gone)) {
        this.dirs.delete(d);
        this.seededDirs.delete(d);
      }
    }
    return true;
  }

  async applyDeletions(deleted: Deleted[]): Promise<void> {
    for (const d of deleted) {
      this.checkAbort();
      if (await this.clear(d.path)) this.merged.deleted++;
      this.progress.add(0, 0);
    }
  }

  /** Files with the base's bytes and new metadata: copied out of the shared inode, verified, re-stamped. */
  async applyTouched(touched: IndexEntry[]): Promise<void> {
    for (const t of touched) {
      this.checkAbort();
      const p = this.abs(t.path);
      const notBase = () => invalid(`"${t.path}": the data folder does not hold the increment's base version (merge an increment onto its restored base)`);
      let src: fsp.FileHandle;
      try {
        src = await fsp.open(p, READ_FLAGS);
      } catch (err) {
        const code = errnoOf(err);
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') throw notBase();
        throw err;
      }
      try {
        const st = await src.stat();
        if (!st.isFile() || st.size !== t.size) throw notBase();
        await fsp.unlink(p); // the staged name; the inode is only read, through src
        const out = await fsp.open(p, CREATE_FLAGS, FILE_MODE);
        try {
          const hash = createHash('sha256');
          let n = 0;
          for await (const chunk of src.createReadStream({ autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
            this.checkAbort();
            hash.update(chunk);
            n += chunk.length;
            await writeAll(out, chunk);
          }
          if (n !== t.size || hash.digest('hex') !== t.sha256) throw notBase();
            await applyMeta(out, t);
        } finally {
          await out.close();
        }
      } finally {
        await src.close();
      }
      this.merged.touched++;
      this.progress.add(0, 0);
    }
  }

  /** 'merge': makes room for a file at `rel` (what the data folder has there is dropped from the staging tree). */
  async makeRoomForFile(rel: string): Promise<void> {
    if (this.merge) await this.clear(rel);
  }

  abs(rel: string): string {
    return path.join(this.stagingDir, rel);
  }

  checkAbort(): void {
    this.signal?.throwIfAborted();
  }

  /** Creates `rel` and its missing parents, each with mkdir (never through anything but our own folders). */
  async ensureDir(rel: string): Promise<void> {
    if (this.dirs.has(rel)) return;
    const parent = path.posix.dirname(rel);
    await this.ensureDir(parent === '.' ? '' : parent);
    try {
      await fsp.mkdir(this.abs(rel), { mode: DIR_MODE });
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw err;
      // Not one of our folders: in a merge, a file of the data folder where the increment has a folder.
      if (!this.merge) throw untar(`"${rel}" already exists in the restored tree`);
      await this.clear(rel);
      await fsp.mkdir(this.abs(rel), { mode: DIR_MODE });
    }
    this.dirs.add(rel);
  }

  async ensureParent(rel: string): Promise<void> {
    const parent = path.posix.dirname(rel);
    await this.ensureDir(parent === '.' ? '' : parent);
  }

  /** Extracts one verified-as-it-goes tar slice. */
  async extractSlice(h: HandedFile): Promise<void> {
    const src = path.join(this.restoreDir, h.uri);
    const fh = await openHanded(src, h);
    // MiB reads: a slice costs a few dozen thread-pool round trips, not thousands.
    const input = fh.createReadStream({ autoClose: false, start: 0, highWaterMark: READ_CHUNK });
    const hashing = new Hashing();
    const extract = tar.extract();
    input.on('error', (err) => extract.destroy(err));
    hashing.on('error', (err) => extract.destroy(err));
    extract.on('error', () => {}); // observed through the iterator
    input.pipe(hashing).pipe(extract);
    let next = 0;
    try {
      try {
        for await (const entry of extract) {
          this.checkAbort();
          const hd = entry.header;
          const type = hd.type;
          if (type !== 'file' && type !== 'directory') {
            throw untar(`${h.uri}: entry "${hd.name}" refused: type ${type ?? 'unknown'} (only files and folders are restored)`);
          }
          let name = hd.name;
          if (type === 'directory' && name.endsWith('/') && name.length > 1) name = name.slice(0, -1);
          const why = unsafePathReason(name, this.stagingDir);
          if (why) throw untar(`${h.uri}: entry "${hd.name}" refused: ${why}`);
          const want = h.entries[next++];
          const kind = type === 'directory' ? 'dir' : 'file';
          if (!want || want.path !== name) throw untar(`${h.uri}: entry "${name}" is not the next one in the index`);
          if (want.kind !== kind || want.size !== (hd.size ?? 0)) {
            throw untar(`${h.uri}: entry "${name}" does not match the index (kind or size)`);
          }
          if (kind === 'dir') {
            await this.ensureDir(name);
            continue;
          }
          await this.writeEntry(h, want, entry as AsyncIterable<Buffer>);
        }
      } catch (err) {
        if (err instanceof RestoreRejected || isSystemError(err) || this.signal?.aborted) throw err;
        throw untar(`${h.uri}: not a valid tar archive: ${(err as Error).message}`);
      }
      if (next !== h.entries.length) throw untar(`${h.uri}: ends before the index's entry "${h.entries[next]!.path}"`);
      if (hashing.bytes !== h.size || hashing.hash.digest('hex') !== h.sha256) {
        throw untar(`${h.uri}: SHA-256 does not match the index (tampered or incomplete)`);
      }
    } finally {
      input.unpipe();
      hashing.unpipe();
      input.destroy();
      hashing.destroy();
      extract.destroy();
      await fh.close();
    }
  }

  /**
   * Writes one tar entry. The file is created, written and stamped with
   * synchronous calls on purpose: each is a page-cache operation of a few
   * microseconds, cheaper than its thread-pool round trip, and the event loop
   * still runs between the entry's chunks.
   */
  async writeEntry(h: HandedFile, e: IndexEntry, data: AsyncIterable<Buffer>): Promise<void> {
    await this.ensureParent(e.path);
    await this.makeRoomForFile(e.path);
    let out: number;
    try {
      out = openSync(this.abs(e.path), CREATE_FLAGS, FILE_MODE);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'EEXIST' || code === 'ELOOP') throw untar(`${h.uri}: "${e.path}" already exists in the restored tree`);
      throw err;
    }
    try {
      const hash = createHash('sha256');
      let n = 0;
      for await (const chunk of data) {
        this.checkAbort();
        hash.update(chunk);
        n += chunk.length;
        if (n > e.size) break;
        for (let off = 0; off < chunk.length; ) off += writeSync(out, chunk, off);
        this.progress.add(0, chunk.length);
      }
      if (n !== e.size || hash.digest('hex') !== e.sha256) {
        throw untar(`${h.uri}: entry "${e.path}": SHA-256 does not match the index (tampered or incomplete)`);
      }
      fchmodSync(out, e.mode & PERM_MASK);
      futimesSync(out, e.mtimeMs / 1000, e.mtimeMs / 1000);
    } finally {
      closeSync(out);
    }
    this.progress.add(1, 0);
  }

  /** Verifies a big file, then renames it into place (copies and re-verifies across file systems). */
  async placeBigFile(h: HandedFile): Promise<void> {
    const e = h.entries[0]!;
    const src = path.join(this.restoreDir, h.uri);
    const fh = await openHanded(src, h);
    try {
      const st = await fh.stat();
      const sha = await this.hashFd(fh, true);
      if (sha !== h.sha256) throw untar(`${h.uri}: SHA-256 does not match the index (tampered or incomplete)`);
      const now = await lstatOrUndefined(src);
      if (!now || now.ino !== st.ino || now.dev !== st.dev) throw untar(`${h.uri}: replaced while being verified`);
      this.checkAbort();
      await this.ensureParent(e.path);
      await this.makeRoomForFile(e.path);
      const dest = this.abs(e.path);
      if ((await lstatOrUndefined(dest)) !== undefined) throw untar(`${h.uri}: "${e.path}" already exists in the restored tree`);
      try {
        await fsp.rename(src, dest);
        this.moved.push({ from: src, to: dest, original: st });
        await fh.sync();
        await applyMeta(fh, e);
      } catch (err) {
        if (errnoOf(err) !== 'EXDEV') throw err;
        await this.copyVerified(h, fh, dest);
      }
    } finally {
      await fh.close();
    }
    this.progress.add(1, 0);
  }

  async hashFd(fh: fsp.FileHandle, count: boolean): Promise<string> {
    const hash = createHash('sha256');
    for await (const chunk of fh.createReadStream({ autoClose: false, start: 0, highWaterMark: READ_CHUNK }) as AsyncIterable<Buffer>) {
      this.checkAbort();
      hash.update(chunk);
      if (count) this.progress.add(0, chunk.length);
    }
    return hash.digest('hex');
  }

  /** The EXDEV fallback: copy from the verified descriptor, re-hashing what is copied. */
  async copyVerified(h: HandedFile, fh: fsp.FileHandle, dest: string): Promise<void> {
    const e = h.entries[0]!;
    const out = await fsp.open(dest, CREATE_FLAGS, FILE_MODE);
    try {
      const hash = createHash('sha256');
      let n = 0;
      for await (const chunk of fh.createReadStream({ autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
        this.checkAbort();
        hash.update(chunk);
        n += chunk.length;
        await writeAll(out, chunk);
      }
      if (n !== h.size || hash.digest('hex') !== h.sha256) {
        throw untar(`${h.uri}: SHA-256 does not match the index (tampered or incomplete)`);
      }
      await applyMeta(out, e);
    } finally {
      await out.close();
    }
  }

  /** Folders' modes and mtimes, deepest first, then the root (0700); each folder fsynced. */
  async finish(plan: Plan): Promise<void> {
    let dirs: Array<{ path: string; mode: number; mtimeMs: number }> = plan.dirEntries;
    if (this.merge) {
      // Folders carried over from dataDir get their own metadata back, unless the index has newer.
      const inIndex = new Set(plan.dirEntries.map((d) => d.path));
      const seeded = [...this.seededDirs].filter(([p]) => !inIndex.has(p)).map(([p, m]) => ({ path: p, ...m }));
      const depth = (p: string) => p.split('/').length;
      dirs = [...plan.dirEntries, ...seeded].sort((a, b) => depth(b.path) - depth(a.path));
    }
    for (const d of dirs) {
      this.checkAbort();
      const p = this.abs(d.path);
      await fsp.chmod(p, d.mode & PERM_MASK);
      const t = d.mtimeMs / 1000;
      await fsp.utimes(p, t, t);
    }
    await fsp.chmod(this.stagingDir, ROOT_MODE);
    // One syncfs for the whole tree instead of an fsync per file and folder: the
    // new tree is on disk before it is swapped in, at a fraction of the cost.
    await syncFileSystem(this.stagingDir);
  }
}

/** Opens a handed file without following a link or blocking on a FIFO; checks it is a lone regular file of the recorded size. */
async function openHanded(p: string, h: HandedFile): Promise<fsp.FileHandle> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(p, READ_FLAGS);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT') throw untar(`${h.uri}: missing from the restore files (incomplete)`);
    if (code === 'ELOOP') throw untar(`${h.uri}: is a symlink, not a regular file`);
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw untar(`${h.uri}: not a regular file`);
    if (h.kind === 'file' && st.nlink !== 1) throw untar(`${h.uri}: has other hard links`);
    if (st.size !== h.size) throw untar(`${h.uri}: ${st.size} bytes, the index says ${h.size} (tampered or incomplete)`);
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Cheap first pass: every handed file is present, a regular file (not a link) of the recorded size. */
async function precheckHanded(index: ManageIndex, restoreDir: string): Promise<void> {
  for (const h of index.files) {
    const st = await lstatOrUndefined(path.join(restoreDir, h.uri));
    if (!st) throw untar(`${h.uri}: missing from the restore files (incomplete)`);
    if (st.isSymbolicLink()) throw untar(`${h.uri}: is a symlink, not a regular file`);
    if (!st.isFile()) throw untar(`${h.uri}: not a regular file`);
    if (st.size !== h.size) throw untar(`${h.uri}: ${st.size} bytes, the index says ${h.size} (tampered or incomplete)`);
  }
}

/** Flushes the file system holding `p` (syncfs, via coreutils `sync -f`); falls back to a global sync. */
async function syncFileSystem(p: string): Promise<void> {
  const run = (args: string[]) =>
    new Promise<void>((resolve, reject) => execFile('sync', args, (err) => (err ? reject(err) : resolve())));
  await run(['-f', p]).catch(() => run([]));
}

// ---- Swapping in ------------------------------------------------------------------

async function swapIn(dataDir: string, stagingDir: string): Promise<void> {
  const parent = path.dirname(dataDir);
  await fsp.mkdir(parent, { recursive: true, mode: DIR_MODE });
  let old: string | undefined;
  if ((await lstatOrUndefined(dataDir)) !== undefined) {
    old = `${dataDir}${OLD_INFIX}${randomBytes(8).toString('hex')}`;
    await fsp.rename(dataDir, old);
  }
  try {
    await fsp.rename(stagingDir, dataDir);
  } catch (err) {
    // Put the old tree back; should that fail too, the next run's recovery does it.
    if (old) await fsp.rename(old, dataDir).catch(() => {});
    throw err;
  }
  // The swap is done: what follows must not fail the restore. A leftover old
  // tree is removed by the next run's recovery.
  await fsyncDir(parent).catch(() => {});
  const stagingParent = path.dirname(stagingDir);
  if (stagingParent !== parent) await fsyncDir(stagingParent).catch(() => {});
  if (old) await removeTree(old).catch(() => {});
}

// ---- Entry point ------------------------------------------------------------------

function checkLayout(restoreDir: string, dataDir: string, stagingDir: string): void {
  const overlap = (a: string, b: string) => a === b || isInside(a, b) || isInside(b, a);
  if (overlap(stagingDir, dataDir)) throw invalid('stagingDir and dataDir must not overlap');
  if (overlap(restoreDir, dataDir)) throw invalid('restoreDir and dataDir must not overlap');
  if (stagingDir === restoreDir || isInside(restoreDir, stagingDir)) throw invalid('restoreDir must not be inside stagingDir');
}

export async function applyRestore(opts: ApplyRestoreOptions): Promise<ApplyRestoreResult> {
  const restoreDir = path.resolve(opts.restoreDir);
  const dataDir = path.resolve(opts.dataDir);
  const stagingDir = path.resolve(opts.stagingDir);
  const { signal } = opts;
  checkLayout(restoreDir, dataDir, stagingDir);
  signal?.throwIfAborted();

  await recoverInterruptedSwap(dataDir);
  const index = await readIndex(restoreDir);
  if (opts.mode === 'merge' && !index.incremental) throw invalid(`not an increment: ${INDEX_URI} has no "incremental" block (restore it with 'apply')`);
  if (opts.mode === 'apply' && index.incremental) throw invalid(`${INDEX_URI} describes an increment, which only 'merge' can apply`);
  const plan = validateIndex(index, stagingDir, restoreDir);
  await reclaimBigFiles(index, restoreDir, stagingDir);
  await resetStaging(stagingDir);

  const progress = new Progress(opts.onProgress);
  const merge = opts.mode === 'merge';
  const builder = new Builder(stagingDir, restoreDir, progress, signal, merge);
  try {
    signal?.throwIfAborted();
    await precheckHanded(index, restoreDir);
    if (merge) {
      await builder.seed(dataDir);
      await builder.applyDeletions(plan.deleted);
      await builder.applyTouched(plan.touched);
    }
    for (const h of index.files) {
      signal?.throwIfAborted();
      if (h.kind === 'tar') await builder.extractSlice(h);
      else await builder.placeBigFile(h);
      progress.emit(); // one report per handed file at least
    }
    await builder.finish(plan);
    signal?.throwIfAborted();
    if (opts.mode !== 'tempOnly') await swapIn(dataDir, stagingDir);
  } catch (err) {
    await undoBuild(builder.moved, stagingDir).catch(() => {});
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
  progress.emit();
  const result: ApplyRestoreResult = {
    files: plan.files,
    dirs: plan.dirs,
    bytes: plan.bytes,
    appliedTo: opts.mode === 'tempOnly' ? stagingDir : dataDir,
  };
  if (merge) result.merged = { ...builder.merged };
  return result;
}
