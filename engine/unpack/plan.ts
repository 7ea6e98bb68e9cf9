/** Reads the index and checks everything the index alone allows, before anything is written. */
import path from 'node:path';
import { INDEX_URI, type Deleted, type IndexEntry, type ManageIndex } from '../../common/manageIndex.js';
import { ManageIndexInvalid, readManageIndex } from '../formats/manageIndex.js';
import { ancestors } from '../fsx.js';
import { invalid, untar } from './options.js';
import { unsafePathReason } from './pathRules.js';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The index in restoreDir; one that cannot be used is refused with 13900020. */
export async function readIndex(restoreDir: string): Promise<ManageIndex> {
  try {
    return await readManageIndex(path.join(restoreDir, INDEX_URI));
  } catch (err) {
    throw err instanceof ManageIndexInvalid ? invalid(err.message) : err;
  }
}

export interface Plan {
  files: number;
  dirs: number;
  bytes: number;
  /** Folder entries, deepest first. */
  dirEntries: IndexEntry[];
  /** An increment's deletions and touched files. */
  deleted: Deleted[];
  touched: IndexEntry[];
}

/** Checks everything that can be checked from the index alone. */
export function validateIndex(index: ManageIndex, stagingDir: string, restoreDir: string): Plan {
  const uris = new Set<string>();
  const kinds = new Map<string, IndexEntry['kind']>();
  const plan: Plan = { files: 0, dirs: 0, bytes: 0, dirEntries: [], deleted: [], touched: [] };
  for (const h of index.files) {
    if (h.uri === '.' || h.uri === '..' || h.uri === INDEX_URI) throw invalid(`${INDEX_URI} lists the reserved uri "${h.uri}"`);
    if (uris.has(h.uri)) throw invalid(`${INDEX_URI} lists "${h.uri}" twice`);
    uris.add(h.uri);
    if (path.resolve(restoreDir, h.uri) === stagingDir) throw invalid(`"${h.uri}" is the staging folder`);
    if (!SHA256_HEX.test(h.sha256)) throw invalid(`${h.uri}: the index's SHA-256 is malformed`);
    if (h.kind === 'file') {
      const e = h.entries[0];
      if (h.entries.length !== 1 || e?.kind !== 'file' || e.size !== h.size || e.sha256 !== h.sha256) {
        throw invalid(`${h.uri}: a big file's record must hold exactly one matching file entry`);
      }
    }
    for (const e of h.entries) {
      const why = unsafePathReason(e.path, stagingDir);
      if (why) throw untar(`${h.uri}: index entry "${e.path}" refused: ${why}`);
      if (kinds.has(e.path)) throw untar(`${h.uri}: index entry "${e.path}" is listed twice`);
      kinds.set(e.path, e.kind);
      if (e.kind === 'file') {
        if (!SHA256_HEX.test(e.sha256)) throw invalid(`${h.uri}: index entry "${e.path}" has a malformed SHA-256`);
        plan.files++;
        plan.bytes += e.size;
      } else {
        if (e.size !== 0) throw invalid(`${h.uri}: folder entry "${e.path}" has a size`);
        plan.dirs++;
        plan.dirEntries.push(e);
      }
    }
  }
  const inc = index.incremental;
  if (inc) {
    const deleted = new Set<string>();
    for (const d of inc.deleted) {
      const why = unsafePathReason(d.path, stagingDir);
      if (why) throw untar(`deleted path "${d.path}" refused: ${why}`);
      if (deleted.has(d.path)) throw invalid(`${INDEX_URI} lists the deleted path "${d.path}" twice`);
      deleted.add(d.path);
    }
    const underDeleted = (p: string) => {
      for (const a of ancestors(p)) if (deleted.has(a)) return true;
      return deleted.has(p);
    };
    for (const t of inc.touched ?? []) {
      const why = unsafePathReason(t.path, stagingDir);
      if (why) throw untar(`touched path "${t.path}" refused: ${why}`);
      if (t.kind !== 'file' || !SHA256_HEX.test(t.sha256)) throw invalid(`touched entry "${t.path}" is not a file with a SHA-256`);
      if (kinds.has(t.path)) throw untar(`index entry "${t.path}" is listed twice`);
      if (underDeleted(t.path)) throw invalid(`touched entry "${t.path}" is deleted too`);
      kinds.set(t.path, 'file');
    }
    plan.deleted = inc.deleted;
    plan.touched = inc.touched ?? [];
  }
  // Nothing may live below a file.
  for (const p of kinds.keys()) {
    for (const a of ancestors(p)) {
      if (kinds.get(a) === 'file') throw untar(`index entry "${p}" lies below the file "${a}"`);
    }
  }
  const depth = (p: string) => p.split('/').length;
  plan.dirEntries.sort((a, b) => depth(b.path) - depth(a.path));
  return plan;
}
