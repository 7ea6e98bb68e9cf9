/**
 * Kept staging trees: one per device and repository under a caching folder
 * (`<dir>/<key>/tree`), updated in place by each store instead of staged
 * afresh. A file that still holds what the index says is left alone, so its
 * inode, mtime and ctime stay the same and restic, given the tree's last
 * snapshot as `--parent`, does not read it again (restic's own checks of
 * inode, ctime, mtime and size all stay on).
 *
 * `state.json` beside the tree records, per file, the SHA-256 it was checked
 * against and its lstat then; it is replaced (write, then rename) only after
 * restic stored the tree. A file is trusted only while its inode, size, mtime
 * and ctime are the recorded ones: anything that wrote to it since — a store
 * killed half-way, a hand in the folder — moves its ctime, and it is staged
 * again. So a crash leaves a tree that the next store repairs, never one it
 * trusts wrongly. The folder holds a copy of the stored data (0700); removing
 * it only costs the next store a full staging.
 *
 * One store at a time per tree (`lock` with the holder's pid; a dead
 * holder's lock is taken over); a second store meanwhile stages privately.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { StagedRecord, StagedRecords } from './stageBundle.js';
import { alive } from './stagingArea.js';

const STATE = 'state.json';
const LOCK = 'lock';
const TREE = 'tree';

export interface KeptTree {
  /** The folder restic backs up. */
  tree: string;
  /** What the tree's files held when last stored (empty when unknown). */
  previous: StagedRecords;
  /** The snapshot last stored from the tree, to pass as restic's --parent. */
  parent?: string;
  /** Records the tree as stored in `snapshot`. */
  save(records: StagedRecords, snapshot: string): Promise<void>;
}

interface StateFile {
  version: 1;
  snapshot: string;
  files: Array<[string, string, string, number, string, string]>;
}

/**
 * The tree's folder name: a hash, so device and repository names need no
 * escaping (and a repository URL is never written out). Increments keep a
 * tree of their own: an increment stores only what changed, so staging it
 * into the full backup's tree would remove (and the next full backup write
 * again) every unchanged file.
 */
export function keptTreeKey(device: string, repository: string, kind: 'full' | 'increment' = 'full'): string {
  const key = createHash('sha256').update(`${device}\0${repository}`).digest('hex').slice(0, 24);
  return kind === 'full' ? key : `${key}-increments`;
}

async function takeLock(file: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fsp.writeFile(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number((await fsp.readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isSafeInteger(holder) && holder > 0 && alive(holder)) return false;
      await fsp.rm(file, { force: true });
    }
  }
  return false;
}

async function readState(file: string): Promise<{ previous: StagedRecords; parent?: string }> {
  try {
    const s = JSON.parse(await fsp.readFile(file, 'utf8')) as StateFile;
    if (s.version !== 1 || !Array.isArray(s.files) || typeof s.snapshot !== 'string') return { previous: new Map() };
    const previous: StagedRecords = new Map();
    for (const [rel, sha256, ino, size, mtimeNs, ctimeNs] of s.files) previous.set(rel, { sha256, ino, size, mtimeNs, ctimeNs });
    return { previous, parent: s.snapshot };
  } catch {
    return { previous: new Map() };
  }
}

/**
 * Runs `fn` with the kept tree of `key` under `cacheDir`, or with undefined
 * when another live store holds it (or, with `onlyIfThere`, when there is
 * no such tree: a reader makes nothing).
 */
export async function withKeptTree<T>(
  cacheDir: string,
  key: string,
  fn: (kept: KeptTree | undefined) => Promise<T>,
  opts: { onlyIfThere?: boolean } = {},
): Promise<T> {
  const dir = path.join(cacheDir, key);
  if (
    opts.onlyIfThere &&
    !(await fsp.stat(path.join(dir, STATE)).then(
      () => true,
      () => false,
    ))
  )
    return fn(undefined);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  await fsp.chmod(cacheDir, 0o700);
  await fsp.chmod(dir, 0o700);
  const lock = path.join(dir, LOCK);
  if (!(await takeLock(lock))) return fn(undefined);
  try {
    const tree = path.join(dir, TREE);
    await fsp.mkdir(tree, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const stateFile = path.join(dir, STATE);
    const { previous, parent } = await readState(stateFile);
    return await fn({
      tree,
      previous,
      ...(parent ? { parent } : {}),
      save: async (records, snapshot) => {
        const files = [...records].map(([rel, r]: [string, StagedRecord]) => [rel, r.sha256, r.ino, r.size, r.mtimeNs, r.ctimeNs]);
        const tmp = `${stateFile}.${process.pid}`;
        await fsp.writeFile(tmp, JSON.stringify({ version: 1, snapshot, files }), { mode: 0o600 });
        await fsp.rename(tmp, stateFile);
      },
    });
  } finally {
    await fsp.rm(lock, { force: true });
  }
}

/** Removes from `tree` everything not in `keep` (paths relative to it; their folders are kept too). */
export async function pruneTree(tree: string, keep: Set<string>): Promise<number> {
  const wanted = new Set<string>();
  for (const rel of keep) for (let p = rel; p && p !== '.' && !wanted.has(p); p = path.dirname(p)) wanted.add(p);
  let removed = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const d of await fsp.readdir(path.join(tree, rel), { withFileTypes: true })) {
      const child = rel ? path.join(rel, d.name) : d.name;
      if (!wanted.has(child)) {
        await fsp.rm(path.join(tree, child), { recursive: true, force: true });
        removed++;
      } else if (d.isDirectory()) await walk(child);
    }
  };
  await walk('');
  return removed;
}
