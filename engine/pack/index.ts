/**
 * Packs a bundle's data/ folder for hand-over (api.md §9): big files alone as
 * `file.<n>`, everything else (small files and every folder, so empty folders
 * survive) in tar slices `part.<n>.tar`, then the index `manage.json`. Pure
 * Node; data is streamed, never held whole in memory. Resuming, increments and
 * files changing under the packer: docs/design/packing.md.
 */
import path from 'node:path';
import { PACK_LIMITS } from '../../common/device.js';
import { INDEX_URI } from '../../common/manageIndex.js';
import { IndexWriter, type IndexTail } from '../formats/manageIndex.js';
import { BUFFERED, ManifestWriter } from '../formats/manifest.js';
import { LoopYield } from '../loopYield.js';
import { walkSteps } from '../walk.js';
import { EntryPacker } from './entryPacker.js';
import { IncrementRecorder } from './increment.js';
import type { PackLimits, PackOptions, PackSummary } from './options.js';
import { PackOutputs } from './outputs.js';
import { OutputSyncs } from './outputSync.js';
import { PackProgressMeter } from './progress.js';
import { configDigest, openOutDir, ResumeCursor, walkKey } from './resume.js';

export type { PackLimits, PackOptions, PackPhase, PackProgress, PackSummary } from './options.js';

export async function packBundle(opts: PackOptions): Promise<PackSummary> {
  const limits: PackLimits = { ...PACK_LIMITS, ...opts.limits };
  const { outDir, signal, base } = opts;
  signal?.throwIfAborted();
  const config = configDigest(opts, limits);
  const progress = new PackProgressMeter(opts.onProgress);
  const loopYield = new LoopYield();
  const { resumed, restartedBecause } = await openOutDir(outDir, opts.resume ?? false, config, progress, signal);

  const syncs = new OutputSyncs();
  const indexPath = path.join(outDir, INDEX_URI);
  // Written as the outputs complete: the pack keeps only the entries of the one it fills (formats/manageIndex.ts).
  const indexWriter = await IndexWriter.open(indexPath, opts.bundleName);
  const out = new PackOutputs(outDir, config, limits, progress, resumed, syncs, indexWriter);
  let writer: ManifestWriter | undefined;
  try {
    writer = opts.manifestPath
      ? await ManifestWriter.open(opts.manifestPath, { bundleName: opts.bundleName, time: opts.time ?? Math.floor(Date.now() / 1000) })
      : undefined;
    await out.writeIndexed(); // what an earlier attempt kept
  } catch (err) {
    await indexWriter.abort();
    throw err;
  }
  const recorder = base || writer ? new IncrementRecorder(base, writer) : undefined;
  const cursor = new ResumeCursor(resumed, outDir, recorder, base, progress, signal);
  const packer = new EntryPacker(out, cursor, recorder, base, limits, outDir, progress, signal);
  progress.phase = cursor.scanning ? 'scan' : 'pack';

  try {
    // The walk's synchronous steps: no promise per item; a promise among them is the event loop's turn.
    for (const item of walkSteps(opts.dataDir, opts.profile, loopYield)) {
      if (item instanceof Promise) {
        await item;
        continue;
      }
      signal?.throwIfAborted();
      syncs.check();
      progress.tick();
      // Without an earlier attempt's outputs (no resume) there is nothing to compare a walk key with.
      const key = cursor.holdsNothing ? undefined : walkKey(item.path);
      if (key && (await cursor.covers(item, key))) continue;
      progress.phase = 'pack';
      const turn = loopYield.due();
      if (turn) await turn;
      const reusable = key && (await cursor.reusableBigFile(item, key));
      if (reusable) await packer.reusedBigFile(reusable);
      else if (item.type === 'skipped') out.skip(item.path, item.reason);
      else if (item.kind === 'dir') await packer.dir(item);
      else {
        const recorded = packer.unchanged(item);
        if (recorded === undefined) await packer.file(item);
        else if (recorded !== BUFFERED) await recorded;
      }
    }
    await out.closeSlice();
    await cursor.finish();
    // Every output on disk before the pack reports it: a flush's error is this attempt's (outputSync.ts).
    await syncs.settle();
  } catch (err) {
    await writer?.abort();
    await indexWriter.abort();
    out.slice?.abort();
    // No fd left open behind a failed attempt; the error reported is the one that stopped it.
    await syncs.settle().catch(() => {});
    throw err;
  }

  const { files, skipped, totals } = out;
  const tail: IndexTail = { skipped, totals, createdAt: new Date().toISOString() };
  const deleted = recorder?.deletions() ?? [];
  if (base) tail.incremental = { baseTime: opts.baseTime ?? 0, deleted, touched: recorder!.touched };
  try {
    await writer?.close();
    // In place at once, not synced: the index lives in the transient transfer area and a retried pack rewrites it.
    await out.finishIndex(tail);
  } catch (err) {
    await writer?.abort();
    await indexWriter.abort();
    throw err;
  }
  progress.phase = 'pack';
  progress.emit();
  const summary: PackSummary = {
    ...totals,
    handOver: files.length,
    handed: files.map((f) => ({ uri: f.uri, size: f.size })),
    skipped: skipped.length,
    indexPath,
  };
  if (recorder) Object.assign(summary, { changed: totals.files, unchanged: recorder.unchanged, deleted: deleted.length });
  if (writer) summary.manifestPath = writer.target;
  if (opts.resume) {
    summary.resumed = resumed ? { kept: out.kept, reused: cursor.reused } : { restartedBecause: restartedBecause ?? 'unknown' };
  }
  return summary;
}
