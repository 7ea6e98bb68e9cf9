/**
 * The staging tree a restore builds: folders made by us, every tar entry and
 * big file verified against the index as it is written, modes and mtimes from
 * the index, and one syncfs before the swap. MergeTree (merge.ts) extends it.
 */
import { createHash } from 'node:crypto';
import { closeSync, fchmodSync, futimesSync, openSync, promises as fsp, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { HandedFile, IndexEntry, ManageIndex } from '../../common/manageIndex.js';
import { copyHashing, errnoOf, isSystemError, lstatOrUndefined } from '../fsx.js';
import { LoopYield } from '../loopYield.js';
import type { ProgressMeter } from '../progressMeter.js';
import { syncFileSystem } from '../syncFs.js';
import { CREATE_FLAGS, DIR_MODE, FILE_MODE, PERM_MASK, READ_FLAGS, ROOT_MODE, RestoreRejected, untar } from './options.js';
import { unsafePathReason } from './pathRules.js';
import type { Plan } from './plan.js';
import { SliceReader } from './sliceReader.js';
import type { Moved } from './swap.js';

/**
 * Handed files are read this much at a time, into one buffer per tree (its
 * handed files are read one after another): as the packer writes its slices.
 */
const READ_CHUNK = 256 * 1024;

/** Sets the index's mode and mtime (atime = mtime) through an open descriptor. */
export async function applyMeta(fh: fsp.FileHandle, e: IndexEntry): Promise<void> {
  await fh.chmod(e.mode & PERM_MASK);
  const t = e.mtimeMs / 1000;
  await fh.utimes(t, t);
}

export class StagingTree {
  /** Folders created so far, relative to the staging root ('' is the root). */
  readonly dirs = new Set<string>(['']);
  readonly moved: Moved[] = [];
  /** The reads are synchronous: the event loop (progress, cancellation, the other bundles' jobs) runs between them. */
  protected readonly yielder = new LoopYield();
  #scratch: Buffer | undefined;

  constructor(
    readonly stagingDir: string,
    readonly restoreDir: string,
    readonly progress: ProgressMeter,
    readonly signal: AbortSignal | undefined,
  ) {}

  abs(rel: string): string {
    return path.join(this.stagingDir, rel);
  }

  checkAbort(): void {
    this.signal?.throwIfAborted();
  }

  /** The tree's read buffer, made at its first read. */
  protected scratch(): Buffer {
    return (this.#scratch ??= Buffer.allocUnsafe(READ_CHUNK));
  }

  /** Makes room for a file at `rel`: nothing is ever in the way of one in a fresh tree (a merge overrides this). */
  protected async makeRoomForFile(_rel: string): Promise<void> {}

  /** Something not of ours is where a folder goes: refused (a merge clears it instead). */
  protected async folderInTheWay(rel: string): Promise<void> {
    throw untar(`"${rel}" already exists in the restored tree`);
  }

  /** The folders stamped with their mode and mtime at the end, deepest first. */
  protected foldersToStamp(plan: Plan): Array<{ path: string; mode: number; mtimeMs: number }> {
    return plan.dirEntries;
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
      await this.folderInTheWay(rel);
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
    const reader = new SliceReader(fh.fd, this.scratch());
    let next = 0;
    try {
      try {
        for (let hd = reader.nextHeader(); hd; hd = reader.nextHeader()) {
          this.checkAbort();
          const type = hd.type;
          if (type !== 'file' && type !== 'directory') {
            throw untar(`${h.uri}: entry "${hd.name}" refused: type ${type ?? 'unknown'} (only files and folders are restored)`);
          }
          let name = hd.name;
          if (type === 'directory' && name.endsWith('/') && name.length > 1) name = name.slice(0, -1);
          const want = h.entries[next++];
          // The index's paths passed these rules already (validateIndex): only a name that differs is checked.
          if (!want || want.path !== name) {
            const why = unsafePathReason(name, this.stagingDir);
            if (why) throw untar(`${h.uri}: entry "${hd.name}" refused: ${why}`);
            throw untar(`${h.uri}: entry "${name}" is not the next one in the index`);
          }
          const kind = type === 'directory' ? 'dir' : 'file';
          if (want.kind !== kind || want.size !== hd.size) {
            throw untar(`${h.uri}: entry "${name}" does not match the index (kind or size)`);
          }
          if (kind === 'dir') await this.ensureDir(name);
          else await this.writeEntry(h, want, reader);
          await this.yielder.due();
        }
      } catch (err) {
        if (err instanceof RestoreRejected || isSystemError(err) || this.signal?.aborted) throw err;
        throw untar(`${h.uri}: not a valid tar archive: ${(err as Error).message}`);
      }
      if (next !== h.entries.length) throw untar(`${h.uri}: ends before the index's entry "${h.entries[next]!.path}"`);
      if (reader.bytes !== h.size || reader.digest() !== h.sha256) {
        throw untar(`${h.uri}: SHA-256 does not match the index (tampered or incomplete)`);
      }
    } finally {
      await fh.close();
    }
  }

  /**
   * Writes one tar entry, its data read from the slice. The file is created,
   * written and stamped with synchronous calls on purpose: each is a
   * page-cache operation of a few microseconds, cheaper than its thread-pool
   * round trip; the slice yields to the event loop between entries.
   */
  async writeEntry(h: HandedFile, e: IndexEntry, reader: SliceReader): Promise<void> {
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
      for (let left = e.size; left > 0;) {
        this.checkAbort();
        const chunk = reader.data(left);
        hash.update(chunk);
        left -= chunk.length;
        for (let off = 0; off < chunk.length;) off += writeSync(out, chunk, off);
        this.progress.add(0, chunk.length);
      }
      reader.endEntry(e.size);
      if (hash.digest('hex') !== e.sha256) {
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

  /** SHA-256 of a handed file, read synchronously through the tree's buffer (yielding to the event loop between reads). */
  async hashFd(fh: fsp.FileHandle, count: boolean): Promise<string> {
    const hash = createHash('sha256');
    const buf = this.scratch();
    for (let pos = 0; ;) {
      this.checkAbort();
      const n = readSync(fh.fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      pos += n;
      hash.update(buf.subarray(0, n));
      if (count) this.progress.add(0, n);
      await this.yielder.due();
    }
    return hash.digest('hex');
  }

  /** The EXDEV fallback: copy from the verified descriptor, re-hashing what is copied. */
  async copyVerified(h: HandedFile, fh: fsp.FileHandle, dest: string): Promise<void> {
    const e = h.entries[0]!;
    const out = await fsp.open(dest, CREATE_FLAGS, FILE_MODE);
    try {
      const copied = await copyHashing(fh, out, this.signal);
      if (copied.bytes !== h.size || copied.sha256 !== h.sha256) {
        throw untar(`${h.uri}: SHA-256 does not match the index (tampered or incomplete)`);
      }
      await applyMeta(out, e);
    } finally {
      await out.close();
    }
  }

  /** Folders' modes and mtimes, deepest first, then the root (0700). */
  async stampFolders(plan: Plan): Promise<void> {
    for (const d of this.foldersToStamp(plan)) {
      this.checkAbort();
      const p = this.abs(d.path);
      await fsp.chmod(p, d.mode & PERM_MASK);
      const t = d.mtimeMs / 1000;
      await fsp.utimes(p, t, t);
    }
    await fsp.chmod(this.stagingDir, ROOT_MODE);
  }

  /** The whole tree synced. */
  async flush(): Promise<void> {
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
export async function precheckHanded(index: ManageIndex, restoreDir: string): Promise<void> {
  for (const h of index.files) {
    const st = await lstatOrUndefined(path.join(restoreDir, h.uri));
    if (!st) throw untar(`${h.uri}: missing from the restore files (incomplete)`);
    if (st.isSymbolicLink()) throw untar(`${h.uri}: is a symlink, not a regular file`);
    if (!st.isFile()) throw untar(`${h.uri}: not a regular file`);
    if (st.size !== h.size) throw untar(`${h.uri}: ${st.size} bytes, the index says ${h.size} (tampered or incomplete)`);
  }
}
