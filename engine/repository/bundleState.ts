/**
 * What a restore of a bundle from a snapshot holds, entry by entry, and how
 * two such states differ. The state comes from the stored manifest when there
 * is one (the bundle's full manifest), else from the index: a full index
 * lists everything, an increment's index is applied over its base's state
 * (deleted entries removed, a folder with everything below it; touched
 * entries take their new mode and mtime; handed-over entries replace).
 */
import type { IndexEntry, ManageIndex } from '../../common/manageIndex.js';

export type EntryState = Pick<IndexEntry, 'path' | 'kind' | 'size' | 'mode' | 'mtimeMs' | 'sha256'>;
export type BundleState = Map<string, EntryState>;

export function stateFromIndex(index: ManageIndex, base?: BundleState): BundleState {
  const state: BundleState = new Map(base ?? []);
  if (index.incremental) {
    for (const d of index.incremental.deleted) {
      state.delete(d.path);
      if (d.kind === 'dir') for (const p of [...state.keys()]) if (p.startsWith(`${d.path}/`)) state.delete(p);
    }
    for (const t of index.incremental.touched ?? []) {
      const had = state.get(t.path);
      state.set(t.path, had ? { ...had, mode: t.mode, mtimeMs: t.mtimeMs } : t);
    }
  } else {
    state.clear();
  }
  for (const f of index.files) for (const e of f.entries) state.set(e.path, e);
  return state;
}

export interface BundleDiff {
  bundleName: string;
  /** Only in the newer snapshot. */
  new: string[];
  /** In both, with other bytes or another kind. */
  changed: string[];
  /** Only in the older snapshot. */
  deleted: string[];
  /** Same bytes, another mode or mtime. */
  touched: string[];
  /** The bundle is in only one of the two snapshots. */
  only?: 'a' | 'b';
}

export function diffStates(bundleName: string, a: BundleState | undefined, b: BundleState | undefined): BundleDiff {
  const d: BundleDiff = { bundleName, new: [], changed: [], deleted: [], touched: [] };
  if (!a) d.only = 'b';
  if (!b) d.only = 'a';
  const olds = a ?? new Map<string, EntryState>();
  const news = b ?? new Map<string, EntryState>();
  for (const [p, n] of news) {
    const o = olds.get(p);
    if (!o) d.new.push(p);
    else if (o.kind !== n.kind || o.size !== n.size || o.sha256 !== n.sha256) d.changed.push(p);
    else if (o.mode !== n.mode || o.mtimeMs !== n.mtimeMs) d.touched.push(p);
  }
  for (const p of olds.keys()) if (!news.has(p)) d.deleted.push(p);
  for (const list of [d.new, d.changed, d.deleted, d.touched]) list.sort();
  return d;
}
