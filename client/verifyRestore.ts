/**
 * Checks a restored data folder against its source: the same entries (the
 * source walked with the bundle's profile, the restored folder with none),
 * kinds, bytes (SHA-256, streamed), modes, and mtimes within 1 ms. Used by
 * scripts/demo.js and the tests.
 */
import { loadBundle } from '../engine/device.js';
import { walkBundle, type WalkProfile } from '../engine/walk.js';
import { bundlePaths } from '../common/device.js';
import { sha256File } from './verifySet.js';

interface Seen {
  kind: string;
  size: number;
  mode: number;
  mtimeMs: number;
  abs: string;
}

async function listing(dir: string, profile: WalkProfile): Promise<Map<string, Seen>> {
  const out = new Map<string, Seen>();
  for await (const item of walkBundle(dir, profile)) {
    if (item.type === 'entry') out.set(item.path, { kind: item.kind, size: item.size, mode: item.mode, mtimeMs: item.mtimeMs, abs: item.absPath });
  }
  return out;
}

/** Mismatches between `source` (with the bundle's profile applied) and everything in `restored`; empty when they match. */
export async function compareTrees(source: string, restored: string, profile: WalkProfile = { excludes: [] }): Promise<string[]> {
  const want = await listing(source, profile);
  const got = await listing(restored, { excludes: [] });
  const problems: string[] = [];
  for (const [p, w] of want) {
    const g = got.get(p);
    if (!g) {
      problems.push(`${p}: missing`);
      continue;
    }
    if (g.kind !== w.kind) {
      problems.push(`${p}: ${g.kind}, expected ${w.kind}`);
      continue;
    }
    if (g.mode !== w.mode) problems.push(`${p}: mode ${g.mode.toString(8)}, expected ${w.mode.toString(8)}`);
    if (Math.abs(g.mtimeMs - w.mtimeMs) > 1) problems.push(`${p}: mtime ${g.mtimeMs}, expected ${w.mtimeMs}`);
    if (w.kind === 'file' && (g.size !== w.size || (await sha256File(g.abs)) !== (await sha256File(w.abs)))) problems.push(`${p}: bytes differ`);
  }
  for (const p of got.keys()) if (!want.has(p)) problems.push(`${p}: restored but not in the source`);
  return problems;
}

/**
 * `bundleName`'s data on the device at `sourceRoot` (its profile applied)
 * against `targetBundle`'s data restored under `restoredRoot`.
 */
export async function compareRestoredBundle(sourceRoot: string, restoredRoot: string, bundleName: string, targetBundle = bundleName): Promise<string[]> {
  const loaded = await loadBundle(sourceRoot, bundleName);
  if (!loaded.ok) return [`${bundleName}: ${loaded.error.message}`];
  return compareTrees(bundlePaths(sourceRoot, bundleName).data, bundlePaths(restoredRoot, targetBundle).data, loaded.config);
}
