/**
 * Getting the verified tree in and the old one out, and recovering from a run
 * that died on the way: the swap's two renames, putting big files back into
 * restoreDir, and the staging folder's reset.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import type { ManageIndex } from '../../common/manageIndex.js';
import { errnoOf, fsyncDir, lstatOrUndefined, removeTree, writeAtomically } from '../fsx.js';
import { DIR_MODE, FILE_MODE, PERM_MASK, type ApplyRestoreResult } from './options.js';

const OLD_INFIX = '.old-';
const OLD_SUFFIX = /^[0-9a-f]{16}$/;

/**
 * A run that died between `rename(dataDir, old)` and `rename(staging, dataDir)`
 * leaves dataDir missing and an old sibling: put it back. With dataDir present,
 * old siblings are the remains of a finished swap: remove them, or, when that
 * swap was this restore's own (`keepFinishedAs`), keep the newest under that name.
 */
export async function recoverInterruptedSwap(dataDir: string, keepFinishedAs?: string): Promise<void> {
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
    const newest = newestDir(olds);
    if (newest) {
      await fsp.rename(newest.p, dataDir);
      await fsyncDir(parent);
    }
    for (const o of olds) if (o !== newest) await removeTree(o.p);
    return;
  }
  const kept = keepFinishedAs ? newestDir(olds) : undefined;
  if (kept && keepFinishedAs) {
    await removeTree(keepFinishedAs);
    await fsp.rename(kept.p, keepFinishedAs);
  }
  for (const o of olds) if (o !== kept) await removeTree(o.p);
}

function newestDir(olds: { p: string; st: Stats }[]): { p: string; st: Stats } | undefined {
  return olds.filter((o) => o.st.isDirectory()).sort((a, b) => b.st.ctimeMs - a.st.ctimeMs)[0];
}

/** What an apply notes before its swap: the folder it swaps in, by identity (kept across the rename), and its result. */
interface AppliedRecord {
  dev: number;
  ino: number;
  birthtimeMs: number;
  result: ApplyRestoreResult;
}

/** Notes, durably, that `tree` is about to be swapped in with this result (see alreadyApplied). */
export async function noteSwapping(record: string, tree: string, result: ApplyRestoreResult): Promise<void> {
  const st = await fsp.lstat(tree);
  const rec: AppliedRecord = { dev: st.dev, ino: st.ino, birthtimeMs: st.birthtimeMs, result };
  await writeAtomically(record, JSON.stringify(rec));
}

/**
 * An earlier attempt's result when its swap is done: the folder its result names
 * as `appliedTo` is one of `places` (where this call may put its tree) and the
 * very one it noted. Otherwise undefined, and the record is dropped (the
 * swap never happened, or did not survive a crash: the apply is redone).
 */
export async function alreadyApplied(record: string, places: string[]): Promise<ApplyRestoreResult | undefined> {
  let rec: AppliedRecord;
  try {
    rec = JSON.parse(await fsp.readFile(record, 'utf8')) as AppliedRecord;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    await fsp.rm(record, { force: true });
    return undefined;
  }
  const to = rec.result?.appliedTo;
  const st = typeof to === 'string' && places.includes(to) ? await lstatOrUndefined(to) : undefined;
  if (st?.isDirectory() && st.dev === rec.dev && st.ino === rec.ino && st.birthtimeMs === rec.birthtimeMs) return rec.result;
  await fsp.rm(record, { force: true });
  return undefined;
}

/** A big file moved from restoreDir into the staging tree; moved back if the build fails. */
export interface Moved {
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
export async function reclaimBigFiles(index: ManageIndex, restoreDir: string, stagingDir: string): Promise<void> {
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
export async function undoBuild(moved: Moved[], stagingDir: string): Promise<void> {
  for (const m of moved) await moveBack(m.to, m.from, m.original.size, m.original).catch(() => {});
  await removeTree(stagingDir);
}

export async function resetStaging(stagingDir: string): Promise<void> {
  const st = await lstatOrUndefined(stagingDir);
  if (st?.isDirectory()) await removeTree(stagingDir);
  else if (st) await fsp.unlink(stagingDir);
  await fsp.mkdir(path.dirname(stagingDir), { recursive: true, mode: DIR_MODE });
  await fsp.mkdir(stagingDir, { mode: DIR_MODE });
  await fsp.chmod(stagingDir, DIR_MODE);
}

/**
 * rename(dataDir, old) → rename(staging, dataDir) → remove old (or rename it to
 * `keepAs`): a crash between the first two renames is undone by recoverInterruptedSwap.
 */
export async function swapIn(dataDir: string, stagingDir: string, keepAs?: string): Promise<void> {
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
  if (old && keepAs) {
    // A kept tree of the same name (a session restored twice) is replaced; should the rename fail, recovery removes old.
    await removeTree(keepAs).catch(() => {});
    if (
      await fsp.rename(old, keepAs).then(
        () => true,
        () => false,
      )
    )
      return;
  }
  if (old) await removeTree(old).catch(() => {});
}
