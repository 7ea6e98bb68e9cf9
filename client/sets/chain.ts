/**
 * A chain of sets: an increment's backup_set.json names its base, back to a
 * set that names none. A bundle is restored from the set that holds it in
 * full, then each increment of it after that, oldest first. Every problem
 * found here is thrown as an Error saying what is wrong with the sets.
 */
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { INDEX_URI, ManageIndexSchema } from '../../common/manageIndex.js';
import { readSetInfo, type SetInfo } from './layout.js';

/**
 * The chain of sets ending at `from`, root first: `from`, its base, the
 * base's base, … until a set names none. A base that is not a readable set,
 * or a loop, is an error.
 */
export function readSetChain(from: string): SetInfo[] {
  const chain: SetInfo[] = [];
  const seen = new Set<string>();
  let dir = path.resolve(from);
  let namedBy: string | undefined;
  for (;;) {
    let set: SetInfo;
    try {
      set = readSetInfo(dir);
    } catch (err) {
      throw new Error(
        namedBy
          ? `the backup set ${namedBy} is an increment of ${dir}, which is missing or broken: ${(err as Error).message}.`
          : `--from ${(err as Error).message}.`,
      );
    }
    const real = realpathSync(set.dir);
    if (seen.has(real)) {
      const dirs = [...chain].reverse().map((c) => c.dir);
      throw new Error(`the base sets of ${dirs[0]} form a loop: ${[...dirs, set.dir].join(' → ')}.`);
    }
    seen.add(real);
    chain.unshift(set);
    if (!set.base) return chain;
    namedBy = set.dir;
    dir = set.base;
  }
}

/** Whether the set's index of the bundle is an increment (has an `incremental` block); an unreadable index is an error. */
export function isIncrement(set: SetInfo, bundleName: string): boolean {
  const file = path.join(set.dir, bundleName, INDEX_URI);
  let parsed: ReturnType<typeof ManageIndexSchema.safeParse>;
  try {
    parsed = ManageIndexSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    throw new Error(`the backup set ${set.dir} has no readable index of ${bundleName} (${file}: ${(err as Error).message}).`);
  }
  if (!parsed.success) throw new Error(`the backup set ${set.dir} has no valid index of ${bundleName} (${file}: ${parsed.error.issues[0]?.message}).`);
  return parsed.data.incremental !== undefined;
}

/**
 * The positions in `chain` of the sets `bundleName` is restored from, oldest
 * first: back from the newest set through its increments to the set that
 * holds it in full. A link the chain lacks is an error.
 */
export function bundleLinks(chain: SetInfo[], bundleName: string): number[] {
  const links: number[] = [];
  for (let k = chain.length - 1; k >= 0; k--) {
    const set = chain[k]!;
    if (!set.done.includes(bundleName)) {
      throw new Error(
        `${bundleName}: ${chain[k + 1]!.dir} holds an increment of it, but its base ${set.dir} does not hold it completely: the chain is broken.`,
      );
    }
    links.unshift(k);
    if (!isIncrement(set, bundleName)) return links;
  }
  throw new Error(`${bundleName}: ${chain[0]!.dir} holds an increment of it but names no base set: the chain is broken.`);
}
