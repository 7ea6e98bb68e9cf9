// The scale figures: backup time over data sets of 0.1×, 1× and 3× the timed
// one (--scale), and one bundle of a million tiny files backed up and
// restored (--million), with the workers' peak RSS and the longest history.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { compareBundleSet, compareRestoredBundle } from '../dist/client/sets/verify.js';
import { datasetShape, writeDataset, writeManyFilesBundle } from './dataset.js';
import { fullBackup, restore } from './ohbackup.js';
import { settle, watchRss } from './procs.js';
import { median } from './report.js';
import { quiesce, temporalCost } from './temporalCost.js';

export const SCALE_FACTORS = [0.1, 1, 3];

/** Writes one data set per factor (bundles `com.bench.scale<k>x.app<i>`); returns factor → { names, files, bytes }. */
export function writeScaleSets(dataRoot, quick, seed) {
  const out = {};
  for (const k of SCALE_FACTORS) {
    const d = writeDataset(dataRoot, datasetShape(quick, k), seed + Math.round(k * 100), `com.bench.scale${String(k).replace('.', '_')}x.app`);
    out[k] = { names: d.bundles.map((b) => b.name), files: d.files, bytes: d.bytes };
  }
  return out;
}

/** `rounds` interleaved rounds (order rotated) of a full backup of each scale's set; medians and the ratio to linear from 1×. */
export async function scaleCurve({ sets, dataRoot, work, rounds, rate, timeoutMs, log }) {
  const times = Object.fromEntries(SCALE_FACTORS.map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    const order = SCALE_FACTORS.map((_, i) => SCALE_FACTORS[(i + r) % SCALE_FACTORS.length]);
    for (const k of order) {
      const out = path.join(work, `scale-${k}-${r}`);
      await settle(); // as the rounds: no writeback left by the set's writing or the last backup
      const x = await fullBackup({ out, bundles: sets[k].names, rate, timeoutMs });
      if (r === 0) {
        const problems = [];
        for (const n of sets[k].names) for (const p of await compareBundleSet(out, dataRoot, n)) problems.push(`${n}: ${p}`);
        if (problems.length) throw new Error(`the ${k}× set did not verify: ${problems.slice(0, 5).join('; ')}`);
      }
      rmSync(out, { recursive: true, force: true });
      times[k].push(x.ms);
      log(`scale round ${r + 1}/${rounds}  ${k}× (${sets[k].files} files)  ${(x.ms / 1000).toFixed(2)} s`);
    }
  }
  const med = Object.fromEntries(SCALE_FACTORS.map((k) => [k, median(times[k])]));
  return SCALE_FACTORS.map((k) => ({
    factor: k,
    files: sets[k].files,
    bytes: sets[k].bytes,
    ms: med[k],
    rounds: times[k],
    /** The time against k × the 1× time: 1.0 is linear. */
    linearRatio: med[k] / (k * med[1]),
  }));
}

export const MILLION_BUNDLE = 'com.bench.million';

/**
 * The million: one bundle of `files` tiny files written, backed up (runBackup,
 * the backup worker's RSS watched), restored onto the restore worker's empty
 * data root (its RSS watched), both verified; the longest history of the
 * backup's workflows.
 */
export async function millionFiles({ dataRoot, restoreRoot, work, files, seed, rate, workers, restoreQueue, timeoutMs, log }) {
  let t = performance.now();
  const written = await writeManyFilesBundle(dataRoot, MILLION_BUNDLE, files, seed, {
    onProgress: (i) => i && log(`million: ${i} files written (${((performance.now() - t) / 1000).toFixed(0)} s)`),
  });
  const writeMs = performance.now() - t;
  log(`million: ${files} files (${(written.bytes / 2 ** 20).toFixed(1)} MiB) written in ${(writeMs / 1000).toFixed(1)} s`);
  const out = path.join(work, 'million-set');
  await quiesce();
  const since = Date.now();
  let rss = watchRss(workers.backup.pid);
  let b;
  let backupRss;
  try {
    b = await fullBackup({ out, bundles: [MILLION_BUNDLE], rate, timeoutMs });
  } finally {
    backupRss = rss.stop();
  }
  log(`million: backup ${(b.ms / 1000).toFixed(1)} s, worker peak RSS ${(backupRss.peak / 2 ** 20).toFixed(0)} MiB`);
  const cost = await temporalCost({ sessionId: b.sessionId, sinceMs: since, expectBundles: 1 });
  rss = watchRss(workers.restore.pid);
  let x;
  let restoreRss;
  try {
    x = await restore({ from: out, bundles: [MILLION_BUNDLE], taskQueue: restoreQueue, timeoutMs });
  } finally {
    restoreRss = rss.stop();
  }
  log(`million: restore ${(x.ms / 1000).toFixed(1)} s, restore worker peak RSS ${(restoreRss.peak / 2 ** 20).toFixed(0)} MiB`);
  t = performance.now();
  const problems = [
    ...(await compareBundleSet(out, dataRoot, MILLION_BUNDLE)).map((p) => `set: ${p}`),
    ...(await compareRestoredBundle(dataRoot, restoreRoot, MILLION_BUNDLE)).map((p) => `restored: ${p}`),
  ];
  if (problems.length) throw new Error(`the million did not verify (${problems.length} problems): ${problems.slice(0, 5).join('; ')}`);
  log(`million: set and restore verified in ${((performance.now() - t) / 1000).toFixed(1)} s (untimed)`);
  rmSync(out, { recursive: true, force: true });
  rmSync(path.join(restoreRoot, MILLION_BUNDLE), { recursive: true, force: true });
  rmSync(path.join(dataRoot, MILLION_BUNDLE), { recursive: true, force: true });
  return {
    files,
    bytes: written.bytes,
    writeMs,
    backupMs: b.ms,
    restoreMs: x.ms,
    backupWorkerRss: backupRss,
    restoreWorkerRss: restoreRss,
    events: cost.total,
    workflows: cost.workflows,
    longestHistory: cost.longestHistory,
    byKind: cost.byKind,
  };
}
