/**
 * Merging an increment: the staging tree starts as a hard-linked copy of the
 * current data folder, the increment's deletions and touched files are applied,
 * and whatever of the data folder is in the way of an entry is dropped from the
 * staging tree first, so an inode shared with data/ is never written to.
 */
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import type { Deleted, IndexEntry } from '../../common/manageIndex.js';
import { ancestors, copyHashing, errnoOf, lstatOrUndefined, removeTree } from '../fsx.js';
import { CREATE_FLAGS, DIR_MODE, FILE_MODE, PERM_MASK, READ_FLAGS, invalid } from './options.js';
import type { Plan } from './plan.js';
import { StagingTree, applyMeta } from './stagingTree.js';

/** Whether `p` or one of its ancestors is in `set`. */
function atOrBelow(p: string, set: Set<string>): boolean {
  if (set.has(p)) return true;
  for (const a of ancestors(p)) if (set.has(a)) return true;
  return false;
}

export class MergeTree extends StagingTree {
  /** Folders copied from dataDir, with the mode and mtime they get back at the end (unless the index has them). */
  readonly seededDirs = new Map<string, { mode: number; mtimeMs: number }>();
  readonly merged = { linked: 0, copied: 0, deleted: 0, touched: 0 };

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
        await copyHashing(fh, out, this.signal);
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
          const copied = await copyHashing(src, out, this.signal);
          if (copied.bytes !== t.size || copied.sha256 !== t.sha256) throw notBase();
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

  /** What the data folder has where a file goes is dropped from the staging tree. */
  protected override async makeRoomForFile(rel: string): Promise<void> {
    await this.clear(rel);
  }

  /** A file of the data folder where the increment has a folder: dropped from the staging tree. */
  protected override async folderInTheWay(rel: string): Promise<void> {
    await this.clear(rel);
  }

  /** Folders carried over from dataDir get their own metadata back, unless the index has newer. */
  protected override foldersToStamp(plan: Plan): Array<{ path: string; mode: number; mtimeMs: number }> {
    const inIndex = new Set(plan.dirEntries.map((d) => d.path));
    const seeded = [...this.seededDirs].filter(([p]) => !inIndex.has(p)).map(([p, m]) => ({ path: p, ...m }));
    const depth = (p: string) => p.split('/').length;
    return [...plan.dirEntries, ...seeded].sort((a, b) => depth(b.path) - depth(a.path));
  }
}
