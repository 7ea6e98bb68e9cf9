/**
 * What a bundle of a backup set holds, in numbers that mean what they say:
 * its entries (files and folders) and data bytes, from the bundle's index
 * (`manage.json` totals), beside the handed-over set files; for an increment
 * also new / changed / deleted / touched / unmodified files (restic's words),
 * from the index's `incremental` section, the set's manifest and the base's.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { INDEX_URI, ManageIndexSchema, type ManageIndex } from '../../common/manageIndex.js';
import { checkIndex, readIndexJson, readManageIndex } from '../../engine/formats/manageIndex.js';
import { readManifest } from '../../engine/formats/manifest.js';
import { SET_MANIFEST } from './layout.js';

export interface IncrementCounts {
  /** Files handed over that the base did not have. */
  new: number;
  /** Files handed over that the base had with other content. */
  changed: number;
  /** Files and folders of the base that are gone (a gone folder counts once). */
  deleted: number;
  /** Files with the base's content but new mode or mtime (not handed over). */
  touched: number;
  /** Files as the base had them. */
  unmodified: number;
}

export interface BundleCounts {
  /** Entries the index holds: files + dirs (for an increment: what it handed over, and every current folder). */
  entries: number;
  files: number;
  dirs: number;
  /** The data bytes of those files. */
  dataBytes: number;
  /** Only for an increment of a base that had the bundle. */
  increment: IncrementCounts | null;
}

/** The base's file paths: its manifest (an incremental set keeps one), else its full index. */
async function basePaths(baseDir: string, bundleName: string): Promise<Set<string> | undefined> {
  const manifest = path.join(baseDir, bundleName, SET_MANIFEST);
  if (existsSync(manifest)) {
    const { entries } = await readManifest(manifest);
    return new Set([...entries.values()].filter((e) => e.kind === 'file').map((e) => e.path));
  }
  const index = await readManageIndex(path.join(baseDir, bundleName, INDEX_URI)).catch(() => undefined);
  if (!index || index.incremental) return undefined;
  return new Set(index.files.flatMap((f) => f.entries.filter((e) => e.kind === 'file').map((e) => e.path)));
}

async function incrementCounts(index: ManageIndex, setDir: string, bundleName: string, baseDir: string | undefined): Promise<IncrementCounts | null> {
  if (!index.incremental) return null;
  const handed = index.files.flatMap((f) => f.entries.filter((e) => e.kind === 'file').map((e) => e.path));
  const base = baseDir ? await basePaths(baseDir, bundleName).catch(() => undefined) : undefined;
  const changed = base ? handed.filter((p) => base.has(p)).length : 0;
  const touched = index.incremental.touched?.length ?? 0;
  let current: number | undefined;
  const manifest = path.join(setDir, bundleName, SET_MANIFEST);
  if (existsSync(manifest)) current = [...(await readManifest(manifest)).entries.values()].filter((e) => e.kind === 'file').length;
  return {
    new: handed.length - changed,
    changed,
    deleted: index.incremental.deleted.length,
    touched,
    unmodified: current === undefined ? 0 : Math.max(0, current - handed.length - touched),
  };
}

/**
 * What the counts need of a full backup's index: its totals, and whether it is an increment (whose index, of only
 * what changed, is then checked whole).
 */
const CountsViewSchema = ManageIndexSchema.pick({ version: true, totals: true }).extend({ incremental: z.unknown().optional() });

/** The counts of `bundleName` in the set at `setDir` (an increment: of base `baseDir`); null when its index cannot be read. */
export async function readBundleCounts(setDir: string, bundleName: string, baseDir?: string): Promise<BundleCounts | null> {
  try {
    const json = await readIndexJson(path.join(setDir, bundleName, INDEX_URI));
    const view = checkIndex(INDEX_URI, json, CountsViewSchema);
    const index = view.incremental === undefined ? undefined : checkIndex(INDEX_URI, json, ManageIndexSchema);
    const { files, dirs, bytes } = view.totals;
    return { entries: files + dirs, files, dirs, dataBytes: bytes, increment: index ? await incrementCounts(index, setDir, bundleName, baseDir) : null };
  } catch {
    return null;
  }
}
