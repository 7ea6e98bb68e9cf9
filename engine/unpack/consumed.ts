/**
 * Dropping the tar slices once the staging tree holds all of them, and the
 * retry that finds them dropped. A slice the tool copied into restoreDir is
 * dirty page cache: kept until after the swap, the apply's syncfs wrote it
 * out (a third of a full restore's bytes) only for it to be removed right
 * after. Unlinked before the syncfs, its pages are discarded unwritten.
 *
 * The crash story (docs/design/restoring.md): the slices are dropped only
 * after every entry of every slice was written and verified and the
 * "built" record (the staging folder's identity) was written. A retry that
 * finds that record and the same staging folder re-verifies the whole tree
 * (every file hashed against the index, nothing else in it) and goes on to
 * its syncfs and swap; a tree that does not verify (a power cut took what
 * was not yet synced) leaves the slices missing, and the apply fails as
 * incomplete, never swapping in a partial tree.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { IndexEntry, ManageIndex } from '../../common/manageIndex.js';
import { ancestors, errnoOf, lstatOrUndefined, writeAtomically } from '../fsx.js';
import { READ_FLAGS } from './options.js';
import { applyMeta, type StagingTree } from './stagingTree.js';

interface BuiltRecord {
  dev: number;
  ino: number;
  birthtimeMs: number;
}

/** Where the built record of an apply whose swap record is `appliedRecord` lives. */
export const builtRecordOf = (appliedRecord: string) => `${appliedRecord}.built`;

/**
 * Notes that `stagingDir` holds the whole verified tree, then unlinks the
 * slices. Not flushed on its own: the syncfs that follows makes it durable
 * with the tree, and a record lost to a power cut only means the slices'
 * absence fails the retry, as a record whose tree was lost does.
 */
export async function noteBuiltAndDropSlices(record: string, stagingDir: string, index: ManageIndex, restoreDir: string): Promise<void> {
  const st = await fsp.lstat(stagingDir);
  const rec: BuiltRecord = { dev: st.dev, ino: st.ino, birthtimeMs: st.birthtimeMs };
  await writeAtomically(record, JSON.stringify(rec), false);
  for (const h of index.files) if (h.kind === 'tar') await fsp.rm(path.join(restoreDir, h.uri), { force: true });
}

/** Whether an earlier attempt noted `stagingDir`, the very folder still there, as built; a stale record is dropped. */
export async function builtBefore(record: string, stagingDir: string): Promise<boolean> {
  let rec: BuiltRecord;
  try {
    rec = JSON.parse(await fsp.readFile(record, 'utf8')) as BuiltRecord;
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') await fsp.rm(record, { force: true });
    return false;
  }
  const st = await lstatOrUndefined(stagingDir);
  if (st?.isDirectory() && st.dev === rec.dev && st.ino === rec.ino && st.birthtimeMs === rec.birthtimeMs) return true;
  await fsp.rm(record, { force: true });
  return false;
}

/**
 * Whether the staging tree is exactly the index's: its folders (and their
 * parents), its files, each a lone regular file of the index's size and
 * SHA-256 (re-stamped with its mode and mtime), nothing else, no link.
 */
export async function verifyBuilt(index: ManageIndex, tree: StagingTree): Promise<boolean> {
  const { stagingDir, signal } = tree;
  const files = new Map(index.files.flatMap((h) => h.entries.filter((e) => e.kind === 'file').map((e) => [e.path, e] as const)));
  const dirs = new Set<string>();
  for (const h of index.files) {
    for (const e of h.entries) {
      if (e.kind === 'dir') dirs.add(e.path);
      for (const a of ancestors(e.path)) dirs.add(a);
    }
  }
  let seen = 0;
  const walk = async (rel: string): Promise<boolean> => {
    for (const d of await fsp.readdir(path.join(stagingDir, rel), { withFileTypes: true })) {
      signal?.throwIfAborted();
      const childRel = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) {
        if (!dirs.has(childRel) || !(await walk(childRel))) return false;
      } else if (d.isFile()) {
        const e = files.get(childRel);
        if (!e || !(await verifyFile(path.join(stagingDir, childRel), e, tree))) return false;
        seen++;
      } else return false;
    }
    return true;
  };
  return (await walk('')) && seen === files.size;
}

async function verifyFile(p: string, e: IndexEntry, tree: StagingTree): Promise<boolean> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(p, READ_FLAGS);
  } catch {
    return false;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.nlink !== 1 || st.size !== e.size) return false;
    if ((await tree.hashFd(fh, false)) !== e.sha256) return false;
    await applyMeta(fh, e);
    return true;
  } finally {
    await fh.close();
  }
}
