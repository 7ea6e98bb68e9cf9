/**
 * Applies a bundle's restore files (api.md §5, §7, §9): recovers from a run
 * that died, plans from the index, builds a private staging tree verifying
 * every byte against manage.json (merging an increment into the current data
 * when asked), and only then swaps it into the bundle's data/ folder (or, for
 * 'tempOnly', leaves it in the staging folder). Pure Node; data is streamed.
 * Safety rules, merging and crash recovery: docs/design/restoring.md.
 */
import path from 'node:path';
import { INDEX_URI } from '../../common/manageIndex.js';
import { ProgressMeter } from '../progressMeter.js';
import { builtBefore, builtRecordOf, noteBuiltAndDropSlices, verifyBuilt } from './consumed.js';
import { MergeTree } from './merge.js';
import { invalid, type ApplyRestoreOptions, type ApplyRestoreResult } from './options.js';
import { checkLayout } from './pathRules.js';
import { readIndex, validateIndex } from './plan.js';
import { StagingTree, precheckHanded } from './stagingTree.js';
import { alreadyApplied, noteSwapping, reclaimBigFiles, recoverInterruptedSwap, resetStaging, swapIn, undoBuild } from './swap.js';

export { RestoreRejected, type ApplyRestoreOptions, type ApplyRestoreResult } from './options.js';
export { unsafePathReason } from './pathRules.js';

/** A 'byIndex' call as the mode its index asks for: an increment merges, a full set applies (or stays in tempOnlyDir). */
function resolveByIndex(opts: ApplyRestoreOptions, increment: boolean, tempOnlyDir: string | undefined): ApplyRestoreOptions {
  if (increment) return { ...opts, mode: 'merge' };
  return tempOnlyDir ? { ...opts, mode: 'tempOnly', stagingDir: tempOnlyDir } : { ...opts, mode: 'apply' };
}

export async function applyRestore(given: ApplyRestoreOptions): Promise<ApplyRestoreResult> {
  const restoreDir = path.resolve(given.restoreDir);
  const dataDir = path.resolve(given.dataDir);
  const tempOnlyDir = given.mode === 'byIndex' && given.tempOnlyStagingDir ? path.resolve(given.tempOnlyStagingDir) : undefined;
  const { signal } = given;
  checkLayout(restoreDir, dataDir, path.resolve(given.stagingDir));
  if (tempOnlyDir) checkLayout(restoreDir, dataDir, tempOnlyDir);
  signal?.throwIfAborted();

  // Where the tree goes: dataDir, or a tempOnly tree's staging folder (byIndex: either, until the index is read).
  const places = given.mode === 'tempOnly' ? [path.resolve(given.stagingDir)] : [dataDir, ...(tempOnlyDir ? [tempOnlyDir] : [])];
  // A retry after an earlier attempt's swap: the tree is in place and its big files are no longer in restoreDir.
  const done = given.appliedRecord ? await alreadyApplied(given.appliedRecord, places) : undefined;
  await recoverInterruptedSwap(dataDir, done ? given.keepPreviousAs : undefined);
  if (done) return done;
  const index = await readIndex(restoreDir);
  const opts = given.mode === 'byIndex' ? resolveByIndex(given, index.incremental !== undefined, tempOnlyDir) : given;
  const stagingDir = path.resolve(opts.stagingDir);
  const appliedTo = opts.mode === 'tempOnly' ? stagingDir : dataDir;
  if (opts.mode === 'merge' && !index.incremental) throw invalid(`not an increment: ${INDEX_URI} has no "incremental" block (restore it with 'apply')`);
  if (opts.mode === 'apply' && index.incremental) throw invalid(`${INDEX_URI} describes an increment, which only 'merge' can apply`);
  const plan = validateIndex(index, stagingDir, restoreDir);
  // Only for 'apply': a merge's staging tree holds the data folder's files too, and a tempOnly one lies
  // outside the session's folder, where a failed attempt's tree would outlive the session; both rebuild.
  const built = opts.appliedRecord && opts.mode === 'apply' ? builtRecordOf(opts.appliedRecord) : undefined;
  const progress = new ProgressMeter(opts.onProgress);
  const merge = opts.mode === 'merge' ? new MergeTree(stagingDir, restoreDir, progress, signal) : undefined;
  const tree = merge ?? new StagingTree(stagingDir, restoreDir, progress, signal);
  // An earlier attempt built the tree and dropped the slices: verified again, not rebuilt (consumed.ts).
  const resumed = built !== undefined && (await builtBefore(built, stagingDir)) && (await verifyBuilt(index, tree));
  if (!resumed) {
    await reclaimBigFiles(index, restoreDir, stagingDir);
    await resetStaging(stagingDir);
  }
  /** Once the slices are dropped, the staging tree is all a retry has: kept on failure. */
  let dropped = resumed;
  let result: ApplyRestoreResult;
  try {
    signal?.throwIfAborted();
    if (!resumed) {
      await precheckHanded(index, restoreDir);
      if (merge) {
        await merge.seed(dataDir);
        await merge.applyDeletions(plan.deleted);
        await merge.applyTouched(plan.touched);
      }
      for (const h of index.files) {
        signal?.throwIfAborted();
        if (h.kind === 'tar') await tree.extractSlice(h);
        else await tree.placeBigFile(h);
        progress.emit(); // one report per handed file at least
      }
    }
    await tree.stampFolders(plan);
    if (built && !dropped) {
      await noteBuiltAndDropSlices(built, stagingDir, index, restoreDir);
      dropped = true;
    }
    await tree.flush();
    signal?.throwIfAborted();
    result = { files: plan.files, dirs: plan.dirs, bytes: plan.bytes, appliedTo };
    if (merge) result.merged = { ...merge.merged };
    // Noted before the swap moves the big files out of reach of a retry's redo (see alreadyApplied).
    if (opts.appliedRecord) await noteSwapping(opts.appliedRecord, stagingDir, result);
    if (opts.mode !== 'tempOnly') await swapIn(dataDir, stagingDir, opts.keepPreviousAs);
  } catch (err) {
    if (!dropped) await undoBuild(tree.moved, stagingDir).catch(() => {});
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
  progress.emit();
  return result;
}
