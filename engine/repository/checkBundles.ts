/**
 * Checks what a snapshot stores of one bundle against the bundle's stored
 * index: every entry the index lists is stored, as the same kind and size,
 * and nothing else is; with `readData`, every file's bytes are read back
 * through restic (streamed) and hashed against the index's SHA-256 — which
 * also finds a damaged pack, by the bundle whose data it held.
 */
import { createHash } from 'node:crypto';
import { ManageIndexSchema, type IndexEntry } from '../../common/manageIndex.js';
import { dumpText, dumpTree, listStored } from './snapshotReader.js';
import type { ResticContext } from './resticProcess.js';
import { DATA_DIR, INDEX_FILE, bundleDataPath } from './storedLayout.js';

export interface BundleProblem {
  snapshot: string;
  bundleName: string;
  problem: string;
}

const MAX_LISTED = 20;

export async function checkBundle(ctx: ResticContext, snapshotId: string, bundle: string, readData: boolean, signal?: AbortSignal): Promise<string[]> {
  let entries: Map<string, IndexEntry>;
  try {
    const parsed = ManageIndexSchema.parse(JSON.parse(await dumpText(ctx, snapshotId, `/${bundle}/${INDEX_FILE}`, signal)));
    entries = new Map(parsed.files.flatMap((f) => f.entries).map((e) => [e.path, e]));
  } catch (err) {
    return [`its stored index cannot be read: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  const seen = new Set<string>();
  const note = (p: string) => {
    if (problems.length < MAX_LISTED) problems.push(p);
    else if (problems.length === MAX_LISTED) problems.push('… (more)');
  };
  const meet = (rel: string, type: string, size: number): IndexEntry | undefined => {
    const e = entries.get(rel);
    if (!e) {
      if (type !== 'dir' && type !== 'directory') note(`${rel} is stored but not in the index`);
      return undefined;
    }
    seen.add(rel);
    const isDir = type === 'dir' || type === 'directory';
    if (isDir !== (e.kind === 'dir')) note(`${rel} is stored as a ${isDir ? 'folder' : 'file'}, the index says ${e.kind}`);
    else if (e.kind === 'file' && size !== e.size) note(`${rel} is stored with ${size} bytes, the index says ${e.size}`);
    return e;
  };
  try {
    if (readData) {
      await dumpTree(
        ctx,
        snapshotId,
        bundleDataPath(bundle),
        async (t) => {
          const e = meet(t.path, t.type, t.size);
          if (!e || e.kind !== 'file') return;
          const hash = createHash('sha256');
          for await (const chunk of t.stream) hash.update(chunk);
          if (hash.digest('hex') !== e.sha256) note(`${t.path}: the stored bytes do not match the index's SHA-256`);
        },
        signal,
      );
    } else {
      const prefix = `${bundleDataPath(bundle)}/`;
      for (const n of await listStored(ctx, snapshotId, bundleDataPath(bundle), { recursive: true, signal })) {
        if (!n.path.startsWith(prefix)) continue; // the folder itself
        meet(n.path.slice(prefix.length), n.type, n.size ?? 0);
      }
    }
  } catch (err) {
    note(`reading its ${DATA_DIR} failed: ${(err as Error).message}`);
  }
  const missing = [...entries.keys()].filter((p) => !seen.has(p));
  if (missing.length) note(`${missing.length} entr${missing.length === 1 ? 'y' : 'ies'} of the index not stored (first: ${missing[0]})`);
  return problems;
}
