/**
 * Lays a backup set folder out in a staging folder the way a snapshot stores
 * it (storedLayout.ts): each bundle's tar slices unpacked into files under
 * `<bundle>/data/`, its big files hard-linked there (copied only when a link
 * cannot be made), the index, manifest, capabilities and summary beside them.
 * Every entry is checked against the bundle's index on the way — name, kind,
 * size and SHA-256, and every slice's and big file's own size and SHA-256 —
 * so nothing that does not match its index is ever stored. Slices are read
 * with the restore's SliceReader, never held whole.
 *
 * Modes and mtimes of the index are applied to what is staged, with the
 * owner's read bit (files) or rwx bits (folders) added so that restic can
 * read what it stores; the index stays the authority on modes at restore. A
 * linked big file keeps the set file's own mode and mtime (changing them
 * would change the set's file too).
 *
 * Staging into a kept tree (stagingCache.ts): a file whose record says it
 * holds the entry's SHA-256, and whose inode, size, mtime and ctime are still
 * the recorded ones (nothing wrote to it since it was checked), is left as it
 * is — a slice entry is still read and checked, only not written again; a big
 * file is not read at all. Its unchanged inode and ctime let restic (given the
 * last snapshot as parent) skip reading it too.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { poolSize, runOffThread } from '../offThread.js';
import { SetMismatch } from './errors.js';
import { newTally, placeDeferred, writeRecorded, type StageBundleJob, type StagedBundle, type StagedRecords, type Tally } from './stageBundle.js';
import { pruneTree } from './stagingCache.js';
import { DATA_DIR, SET_CAPABILITIES, SET_SUMMARY, SetSummarySchema, bundleNameProblem, type SetSummary } from './storedLayout.js';

export type { StagedRecord, StagedRecords } from './stageBundle.js';

export interface StagedSet {
  summary: SetSummary;
  /** Bundles staged (state done in the summary, with an index). */
  bundles: string[];
  /** Bundles of the summary not staged (not done). */
  notStored: string[];
  /** Files and bytes staged under the bundles' data folders. */
  files: number;
  bytes: number;
  /** Of those, files left as they were in a kept tree (their bytes unchanged). */
  kept: number;
  /** Every staged file (data, and the summary, indexes and manifests), by path relative to the staging folder: what it holds, and its stat when checked. */
  records: StagedRecords;
}

export interface StageOptions {
  /** Replaces the summary's fields in the staged backup_set.json (the base by snapshot). */
  summaryPatch?: (summary: SetSummary) => SetSummary;
  signal?: AbortSignal;
  /**
   * Staging into a kept tree (stagingCache.ts): its records (files still
   * matching one are not written again). Big files are then copied (or moved,
   * with `moveBigFiles`), never linked: a link shares the set file's inode,
   * whose ctime moves when the set is removed, and restic would read it again.
   */
  previous?: StagedRecords;
  /** The set is given up after the store (a run's private set): its big files may be moved into the staging tree. */
  moveBigFiles?: boolean;
}

/** Reads and checks `<setDir>/backup_set.json`. */
export async function readSetSummary(setDir: string): Promise<SetSummary> {
  const file = path.join(setDir, SET_SUMMARY);
  let raw: unknown;
  try {
    raw = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (err) {
    throw new SetMismatch(`${setDir} is not a backup set: ${file} cannot be read (${(err as Error).message})`);
  }
  const parsed = SetSummarySchema.safeParse(raw);
  if (!parsed.success) throw new SetMismatch(`${setDir} is not a backup set: ${SET_SUMMARY} is not valid (${parsed.error.issues[0]?.message})`);
  return parsed.data;
}

export async function stageSet(setDir: string, stageDir: string, opts: StageOptions = {}): Promise<StagedSet> {
  return new SetStager(stageDir, opts).finish(setDir);
}

/** Bundles staged at once: one per engine thread staging may take (two on 2 cores), one where jobs run in place. */
const stageLanes = () => Math.max(1, poolSize('stage'));

/**
 * Stages a set bundle by bundle, each on an engine thread (offThread.ts),
 * as many at a time as the pool gives staging: staging is hashing and file
 * creation, and a store otherwise leaves the other cores idle. Bundles may be handed over while the session
 * that writes the set still runs (`bundleDone`, once all a bundle's files
 * are in the set: its index is the last one kept); their big files are
 * checked where they are and placed by `finish` (moved out of the set early,
 * one would be missing from the set's own flush, and from the set if the
 * store has to stage afresh). `finish` reads the summary, which has the last
 * word: it stages the bundles not staged yet, and takes out again one staged
 * early that the summary does not hold as done. Every entry is checked
 * against its index, on whichever thread.
 */
export class SetStager {
  readonly #staged: Tally;
  readonly #bundles = new Map<string, Promise<StagedBundle | undefined>>();
  readonly #waiting: Array<() => void> = [];
  #running = 0;
  #failure: { err: unknown } | undefined;

  constructor(
    readonly stageDir: string,
    private readonly opts: StageOptions = {},
  ) {
    this.#staged = newTally(stageDir, { previous: opts.previous ?? new Map(), keptTree: opts.previous !== undefined, move: opts.moveBigFiles === true });
    for (const f of [SET_CAPABILITIES, SET_SUMMARY]) this.#staged.placed.add(f);
  }

  /** Stages `bundle` of the set in `setDir`, which is still being written, in the background (a failure is `finish`'s). */
  bundleDone(setDir: string, bundle: string): void {
    // A name the summary would refuse is left for finish, which refuses it.
    if (!bundleNameProblem(bundle)) this.#start(setDir, bundle, true);
  }

  #start(setDir: string, bundle: string, deferBigFiles: boolean): void {
    if (this.#bundles.has(bundle)) return;
    const { previous, keptTree, move, stageDir } = this.#staged;
    const job: StageBundleJob = {
      setDir,
      stageDir,
      bundle,
      keptTree,
      move,
      previous: [...previous].filter(([rel]) => rel.startsWith(`${bundle}/`)),
      deferBigFiles,
    };
    const run = (async () => {
      if (this.#running >= stageLanes()) await new Promise<void>((go) => this.#waiting.push(go));
      this.#running++;
      try {
        if (this.#failure) return undefined;
        const done = await runOffThread('stage', job, { signal: this.opts.signal });
        const t = this.#staged;
        t.files += done.files;
        t.bytes += done.bytes;
        t.kept += done.kept;
        for (const [rel, r] of done.records) t.records.set(rel, r);
        for (const rel of done.placed) t.placed.add(rel);
        return done;
      } catch (err) {
        this.#failure ??= { err };
        return undefined;
      } finally {
        this.#running--;
        this.#waiting.shift()?.();
      }
    })();
    this.#bundles.set(bundle, run);
  }

  /** Waits until the bundles staged in the background are done (before the staging folder is given up). */
  async settle(): Promise<void> {
    await Promise.all(this.#bundles.values());
  }

  /** Stages the rest of the complete set in `setDir` and returns what was staged. */
  async finish(setDir: string, summaryPatch = this.opts.summaryPatch): Promise<StagedSet> {
    await this.settle();
    this.#throwFailure();
    const { signal } = this.opts;
    const summary = await readSetSummary(setDir);
    const done = summary.bundles.filter((b) => b.state === 'done').map((b) => b.bundleName);
    for (const b of done) {
      const why = bundleNameProblem(b);
      if (why) throw new SetMismatch(`${setDir}: ${why}`, b);
    }
    const staged = this.#staged;
    for (const [bundle, run] of this.#bundles) {
      const early = await run;
      if (early && !done.includes(bundle)) await this.#takeOut(bundle, early);
    }
    // The rest, complete now: their big files placed at once.
    for (const bundle of done) this.#start(setDir, bundle, false);
    await this.settle();
    this.#throwFailure();
    for (const bundle of done) {
      signal?.throwIfAborted();
      const early = await this.#bundles.get(bundle);
      if (early?.deferred.length) await placeDeferred(early, bundle, path.join(this.stageDir, bundle, DATA_DIR), staged);
    }
    const stageDir = this.stageDir;
    await fsp.copyFile(path.join(setDir, SET_CAPABILITIES), path.join(stageDir, SET_CAPABILITIES)).catch((err: unknown) => {
      throw new SetMismatch(`${setDir} is not a whole backup set: ${SET_CAPABILITIES} cannot be read (${(err as Error).message})`);
    });
    const stored = summaryPatch ? summaryPatch(summary) : summary;
    await writeRecorded(staged, path.join(stageDir, SET_SUMMARY), Buffer.from(JSON.stringify(stored, null, 2)));
    // What the last store staged and this one does not (gone entries, bundles not stored now) must not be stored again.
    if (staged.keptTree) await pruneTree(stageDir, new Set([...staged.placed, ...staged.records.keys()]));
    return {
      summary: stored,
      bundles: done,
      notStored: summary.bundles.filter((b) => b.state !== 'done').map((b) => b.bundleName),
      files: staged.files,
      bytes: staged.bytes,
      kept: staged.kept,
      records: staged.records,
    };
  }

  #throwFailure(): void {
    if (this.#failure) throw this.#failure.err;
  }

  /** A bundle staged early that is not stored after all: gone from the staging folder and from the tally. */
  async #takeOut(bundle: string, early: StagedBundle): Promise<void> {
    const t = this.#staged;
    for (const [rel] of early.records) t.records.delete(rel);
    for (const rel of early.placed) t.placed.delete(rel);
    t.files -= early.files;
    t.bytes -= early.bytes;
    t.kept -= early.kept;
    this.#bundles.delete(bundle);
    await fsp.rm(path.join(this.stageDir, bundle), { recursive: true, force: true });
  }
}
