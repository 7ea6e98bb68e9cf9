/**
 * Walks a bundle's data/ folder in a fixed order and applies the profile's
 * includes/excludes (api.md §7, §9). Pure Node, no Temporal.
 *
 * Pattern semantics (picomatch, `dot: true`, paths relative to data/, '/'-separated):
 * - A pattern's leading "./" or "/" and trailing "/" are dropped: "./files/" means "files".
 * - A pattern `p` matches a path when `p` or `p/**` does, so naming a folder
 *   means everything below it. This holds for excludes (as api.md §7 says) and,
 *   for symmetry, for includes too.
 * - includes missing → everything; includes [] → nothing (not even skipped reports).
 * - A path is wanted when some include matches it (or an ancestor) and no
 *   exclude matches it. Excluded folders are not descended into.
 * - A folder is yielded as a 'dir' entry when it is wanted itself (its contents
 *   then follow), or, lazily, just before the first wanted thing below it, so an
 *   include like "**\/*.db" keeps the folders leading to each .db file but not
 *   unrelated empty folders. A folder whose listing cannot be read is reported
 *   as skipped (with the errno) and not yielded as an entry.
 * - Symlinks and special files are never followed or yielded; they are reported
 *   as skipped only when they are wanted by the patterns (otherwise it is noise).
 *   So is a wanted name that vanished between the listing and its lstat ('vanished').
 * - A missing data/ folder is an empty bundle; other errors on data/ itself throw.
 *
 * Order: a folder's children sorted by UTF-8 byte order of their names,
 * depth-first, a folder before its contents. Memory: one folder's list of
 * names per depth level, plus the chain of not-yet-yielded ancestors.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { LoopYield } from './loopYield.js';

export type WalkItem =
  | {
      type: 'entry';
      /** POSIX path relative to dataDir. */
      path: string;
      kind: 'file' | 'dir';
      size: number;
      /** Permission bits only (mode & 0o7777). */
      mode: number;
      mtimeMs: number;
      absPath: string;
    }
  | { type: 'skipped'; path: string; reason: string };

export type WalkEntry = Extract<WalkItem, { type: 'entry' }>;

export interface WalkProfile {
  includes?: string[];
  excludes: string[];
}

/** Why a non-regular, non-folder item is skipped; also used by the packer on re-open. */
export function specialKind(st: Stats): string {
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isBlockDevice() || st.isCharacterDevice()) return 'device';
  return 'special';
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? String(err);
}

function normalizePattern(p: string): string {
  return p.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}

/** Matches `p` or anything below `p`, for every pattern. */
function folderAwareMatcher(patterns: string[]): (p: string) => boolean {
  const all = patterns.map(normalizePattern).flatMap((p) => (p === '' ? ['**'] : [p, `${p}/**`]));
  if (all.length === 0) return () => false;
  return picomatch(all, { dot: true });
}

/**
 * Whether a folder could hold something an include matches, from the literal
 * base of each pattern ("files/**" → "files"). Only prunes; a false "true" is
 * harmless, it just means descending for nothing.
 */
function containmentTest(includes: string[]): (dir: string) => boolean {
  const bases = includes.map((p) => {
    const s = picomatch.scan(normalizePattern(p));
    // Negations and escapes make the literal base unreliable: never prune on them.
    return s.negated || s.base.includes('\\') ? '' : s.base;
  });
  return (dir) => bases.some((b) => b === '' || b === dir || b.startsWith(`${dir}/`) || dir.startsWith(`${b}/`));
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const SURROGATE = /[\uD800-\uDFFF]/;

/**
 * Sorts names by their UTF-8 bytes. Without surrogates (characters beyond U+FFFF) UTF-16 code unit order is
 * code point order, which is UTF-8 byte order: the default sort, without two Buffers per comparison.
 */
export function sortByBytes(names: string[]): string[] {
  return names.some((n) => SURROGATE.test(n)) ? names.sort(byteOrder) : names.sort();
}

interface PendingDir {
  entry: WalkEntry;
  yielded: boolean;
}

export async function* walkBundle(dataDir: string, profile: WalkProfile): AsyncGenerator<WalkItem> {
  for (const step of walkSteps(dataDir, profile)) {
    if (step instanceof Promise) await step;
    else yield step;
  }
}

/**
 * The walk as a synchronous generator: its items, and between them, every few milliseconds, a promise the caller
 * awaits before it asks for the next one (the event loop's turn: a walk of a big tree must let heartbeats through).
 * A hot caller (the pack) iterates it without a promise per item; walkBundle is the same walk as an async one.
 */
export function* walkSteps(dataDir: string, profile: WalkProfile, loopYield = new LoopYield()): Generator<WalkItem | Promise<void>> {
  if (profile.includes !== undefined && profile.includes.length === 0) return;
  const included = profile.includes === undefined ? () => true : folderAwareMatcher(profile.includes);
  const mayContain = profile.includes === undefined ? () => true : containmentTest(profile.includes);
  const excluded = folderAwareMatcher(profile.excludes);

  let rootStat: Stats;
  try {
    rootStat = lstatSync(dataDir);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return;
    throw err;
  }
  if (!rootStat.isDirectory()) throw new Error(`${dataDir} is not a folder (${specialKind(rootStat)})`);

  // Ancestors of the current position, outermost first; those not yet yielded
  // are yielded just before the first wanted item below them.
  const chain: PendingDir[] = [];
  function* flushChain(): Generator<WalkItem> {
    for (const p of chain) {
      if (!p.yielded) {
        p.yielded = true;
        yield p.entry;
      }
    }
  }

  // Depth first with an explicit stack and synchronous listings: one generator step per item (nested
  // async generators and a directory iterator cost several promises per item, each seen by async hooks).
  interface Frame {
    rel: string;
    abs: string;
    names: string[];
    next: number;
  }
  const listing = (abs: string) => sortByBytes(readdirSync(abs));
  const stack: Frame[] = [{ rel: '', abs: dataDir, names: listing(dataDir), next: 0 }];
  while (stack.length > 0) {
    // All of it is synchronous: a walk of a big tree must still let heartbeats and queries through.
    const turn = loopYield.due();
    if (turn) yield turn;
    const top = stack[stack.length - 1]!;
    if (top.next >= top.names.length) {
      stack.pop();
      if (top.rel !== '') chain.pop();
      continue;
    }
    const name = top.names[top.next++]!;
    const childRel = top.rel === '' ? name : `${top.rel}/${name}`;
    if (excluded(childRel)) continue;
    // Below the root, top.abs is already normal and a listed name has no '/' and is not '.' or '..': path.join's result.
    const childAbs = top.rel === '' ? path.join(top.abs, name) : `${top.abs}/${name}`;
    let st: Stats;
    try {
      // Synchronous: a metadata lookup costs less than its thread-pool round trip.
      st = lstatSync(childAbs);
    } catch (err) {
      // Vanished since the listing: nothing to back up, but said, like any file gone before it was read.
      if (included(childRel)) yield { type: 'skipped', path: childRel, reason: errnoOf(err) === 'ENOENT' ? 'vanished' : errnoOf(err) };
      continue;
    }
    const entry: WalkEntry = {
      type: 'entry',
      path: childRel,
      kind: st.isDirectory() ? 'dir' : 'file',
      size: st.isDirectory() ? 0 : st.size,
      mode: st.mode & 0o7777,
      mtimeMs: st.mtimeMs,
      absPath: childAbs,
    };
    if (st.isDirectory()) {
      if (!included(childRel) && !mayContain(childRel)) continue;
      let names: string[];
      try {
        names = listing(childAbs);
      } catch (err) {
        // Only report a folder that was wanted or could hold wanted things (as this one).
        yield { type: 'skipped', path: childRel, reason: errnoOf(err) };
        continue;
      }
      chain.push({ entry, yielded: false });
      if (included(childRel)) yield* flushChain();
      stack.push({ rel: childRel, abs: childAbs, names, next: 0 });
    } else if (!included(childRel)) {
      continue;
    } else if (st.isFile()) {
      yield* flushChain();
      yield entry;
    } else {
      yield { type: 'skipped', path: childRel, reason: specialKind(st) };
    }
  }
}
