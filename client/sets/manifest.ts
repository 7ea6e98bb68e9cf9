/**
 * A set without `<bundle>/manifest.jsonl` (a plain `ohbackup backup`) can still
 * be the base of an increment: a full backup's index (`manage.json`) lists every
 * entry it holds with path, kind, size, mode, mtime and SHA-256, which is all a
 * manifest holds.
 */
import path from 'node:path';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { writeManifest, type ManifestEntry } from '../../engine/formats/manifest.js';
import { INDEX_URI } from '../../common/manageIndex.js';
import type { SetInfo } from './layout.js';

/**
 * Writes at `target` the manifest of `bundleName` as the set's index describes
 * it, with the set's time; returns `target`. Throws when the index is missing,
 * not valid, or an increment (which describes only the changes).
 */
export async function manifestFromIndex(set: SetInfo & { time: number }, bundleName: string, target: string): Promise<string> {
  const index = await readManageIndex(path.join(set.dir, bundleName, INDEX_URI));
  if (index.bundleName !== bundleName) throw new Error(`its ${INDEX_URI} is the index of ${index.bundleName}`);
  if (index.incremental) throw new Error(`its ${INDEX_URI} is an increment's`);
  const entries = function* (): Generator<ManifestEntry> {
    for (const f of index.files) for (const { path: p, kind, size, mode, mtimeMs, sha256 } of f.entries) yield { path: p, kind, size, mode, mtimeMs, sha256 };
  };
  await writeManifest(target, { bundleName, time: set.time }, entries());
  return target;
}
