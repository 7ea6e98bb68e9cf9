/**
 * What an increment needs of its base, without the data: the base's
 * backup_set.json (its time and which bundles it holds) and each bundle's
 * manifest.jsonl, written as a set folder that the incremental backup path
 * (`runBackup({ base })`) reads like any other base set. A bundle stored
 * without a manifest is simply backed up in full by the increment.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { readStoredSummary } from './materialize.js';
import type { ResticContext } from './resticProcess.js';
import { dumpToFile, listStored } from './snapshotReader.js';
import { SET_MANIFEST, SET_SUMMARY, type SetSummary } from './storedLayout.js';

export async function materializeBaseManifests(
  ctx: ResticContext,
  snapshotId: string,
  outDir: string,
  stored: string[],
  signal?: AbortSignal,
): Promise<SetSummary> {
  await fsp.mkdir(outDir, { recursive: true, mode: 0o700 });
  const summary = await readStoredSummary(ctx, snapshotId, signal);
  const withManifest: string[] = [];
  for (const b of stored) {
    const names = new Set((await listStored(ctx, snapshotId, `/${b}`, { signal })).map((n) => n.name));
    if (!names.has(SET_MANIFEST)) continue;
    await fsp.mkdir(path.join(outDir, b), { mode: 0o700 });
    await dumpToFile(ctx, snapshotId, `/${b}/${SET_MANIFEST}`, path.join(outDir, b, SET_MANIFEST), signal);
    withManifest.push(b);
  }
  const { base: _b, baseRelative: _r, ...rest } = summary;
  const written = { ...rest, bundles: summary.bundles.filter((o) => stored.includes(o.bundleName)) };
  await fsp.writeFile(path.join(outDir, SET_SUMMARY), JSON.stringify(written, null, 2), { mode: 0o600 });
  return written;
}
