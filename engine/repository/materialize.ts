/**
 * Rebuilds a backup set folder from a snapshot, exactly as `ohbackup backup`
 * wrote it and the restore path reads it: `backup_set.json`,
 * `capabilities.json`, and per bundle its index, manifest, tar slices and
 * big files (files 0600, folders 0700).
 *
 * The set's small files come in one `restic restore --include`; the
 * bundles' stored files stream out of one `restic dump --archive tar` (of
 * `/`, or of the one bundle asked for) into bundleRebuilder.ts, which
 * re-makes the slices byte for byte and checks them against the index.
 * A file becomes visible under its name only once it matched.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { readManageIndex } from '../formats/manageIndex.js';
import { ErrorCode, describeCode } from '../../common/errors.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import { BundleRebuilder } from './bundleRebuilder.js';
import { ResticFailed, SetMismatch } from './errors.js';
import { dumpText, dumpTree } from './snapshotReader.js';
import { runRestic, type ResticContext } from './resticProcess.js';
import { DATA_DIR, INDEX_FILE, SET_CAPABILITIES, SET_MANIFEST, SET_SUMMARY, SetSummarySchema, bundleDataPath, type SetSummary } from './storedLayout.js';

export interface MaterializeOptions {
  /** Bundles to rebuild (default every bundle the snapshot stores). */
  bundles?: string[];
  signal?: AbortSignal;
  /** Reports each bundle as it is rebuilt. */
  onBundle?: (bundleName: string, files: number, bytes: number) => void;
  /**
   * A bundle that cannot be rebuilt (damaged in the repository, or not
   * matching its index) is left out and marked failed in backup_set.json
   * (code 13500008, untar failed), and the others are rebuilt; default:
   * the first such bundle fails the whole call.
   */
  keepGoing?: boolean;
}

export interface MaterializedSet {
  dir: string;
  summary: SetSummary;
  /** Bundles rebuilt. */
  bundles: string[];
  /** Bundles left out (with keepGoing), and why. */
  failed: Array<{ bundleName: string; error: { code: number; message: string } }>;
}

/** The summary a snapshot stores. */
export async function readStoredSummary(ctx: ResticContext, snapshotId: string, signal?: AbortSignal): Promise<SetSummary> {
  const text = await dumpText(ctx, snapshotId, `/${SET_SUMMARY}`, signal);
  const parsed = SetSummarySchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new SetMismatch(`snapshot ${snapshotId}: its ${SET_SUMMARY} is not valid (${parsed.error.issues[0]?.message})`);
  return parsed.data;
}

/**
 * Writes the set of `snapshotId` into `outDir` (new or empty). Its
 * backup_set.json lists the bundles rebuilt, and names no base folder (an
 * increment's base is named by `baseSnapshot` / `baseSession`; see chain.ts
 * for rebuilding a whole chain with folder bases).
 */
export async function materializeSet(
  ctx: ResticContext,
  snapshotId: string,
  outDir: string,
  stored: string[],
  opts: MaterializeOptions = {},
): Promise<MaterializedSet> {
  const existing = await fsp.readdir(outDir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
  if (existing.length) throw new SetMismatch(`${outDir} must be a new or empty folder`);
  await fsp.mkdir(outDir, { recursive: true, mode: 0o700 });
  const bundles = opts.bundles ?? stored;
  for (const b of bundles)
    if (!stored.includes(b)) throw new SetMismatch(`snapshot ${snapshotId} does not store bundle ${b} (it stores: ${stored.join(', ') || 'none'})`, b);
  await restoreMetadata(ctx, snapshotId, outDir, bundles, opts.signal);
  const summary = SetSummarySchema.parse(JSON.parse(await fsp.readFile(path.join(outDir, SET_SUMMARY), 'utf8')));
  const failed: MaterializedSet['failed'] = [];
  const { failures, made } = await rebuildBundles(ctx, snapshotId, outDir, bundles, opts.keepGoing === true, opts.signal);
  for (const b of bundles) {
    const err = failures.get(b);
    if (!err) {
      const m = made.get(b) ?? { files: 0, bytes: 0 };
      opts.onBundle?.(b, m.files, m.bytes);
      continue;
    }
    await fsp.rm(path.join(outDir, b), { recursive: true, force: true });
    failed.push({ bundleName: b, error: { code: ErrorCode.UNTAR_FAILED, message: `${describeCode(ErrorCode.UNTAR_FAILED)}: ${err.message}` } });
  }
  const { base: _base, baseRelative: _rel, ...rest } = summary;
  const written: SetSummary = {
    ...rest,
    bundles: summary.bundles
      .filter((o) => bundles.includes(o.bundleName))
      .map((o) => {
        const f = failed.find((x) => x.bundleName === o.bundleName);
        return f ? { ...o, state: 'failed', error: f.error } : o;
      }),
  };
  await fsp.writeFile(path.join(outDir, SET_SUMMARY), JSON.stringify(written, null, 2), { mode: 0o600 });
  return { dir: outDir, summary: written, bundles: bundles.filter((b) => !failed.some((f) => f.bundleName === b)), failed };
}

/**
 * The small files of the set in one restic call (`restic restore --include`,
 * which checks every blob it reads): summary, capabilities, and each
 * bundle's index and manifest, made 0600 in their folders (0700).
 */
async function restoreMetadata(ctx: ResticContext, snapshotId: string, outDir: string, bundles: string[], signal?: AbortSignal): Promise<void> {
  const tmp = await fsp.mkdtemp(path.join(outDir, '.meta-'));
  try {
    const includes = [`/${SET_SUMMARY}`, `/${SET_CAPABILITIES}`, ...bundles.flatMap((b) => [`/${b}/${INDEX_FILE}`, `/${b}/${SET_MANIFEST}`])];
    let partly: Error | undefined;
    try {
      await runRestic(ctx, {
        args: ['restore', '--json', snapshotId, '--target', tmp, ...includes.flatMap((i) => ['--include', i])],
        onJson: () => undefined,
        signal,
      });
    } catch (err) {
      // Exit 1 after restoring what it could (a damaged blob): the bundles whose files are missing or broken fail one by one.
      if (!(err instanceof ResticFailed && err.exitCode === 1)) throw err;
      partly = err;
    }
    for (const name of [SET_SUMMARY, SET_CAPABILITIES]) {
      await fsp.rename(path.join(tmp, name), path.join(outDir, name)).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ENOENT' ? (partly ?? new SetMismatch(`snapshot ${snapshotId} stores no ${name}`)) : err;
      });
      await fsp.chmod(path.join(outDir, name), 0o600);
    }
    for (const b of bundles) {
      const dir = path.join(outDir, b);
      await fsp.mkdir(dir, { mode: 0o700 });
      for (const name of [INDEX_FILE, SET_MANIFEST]) {
        const moved = await fsp.rename(path.join(tmp, b, name), path.join(dir, name)).then(
          () => true,
          (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? false : Promise.reject(err)),
        );
        if (moved) await fsp.chmod(path.join(dir, name), 0o600);
      }
    }
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/** The bundle's index, restored into its folder already. */
async function loadIndex(snapshotId: string, bundle: string, dir: string): Promise<ManageIndex> {
  const indexPath = path.join(dir, INDEX_FILE);
  if (!(await fsp.stat(indexPath).catch(() => undefined))) throw new SetMismatch(`snapshot ${snapshotId} stores no index of ${bundle}`, bundle);
  try {
    return await readManageIndex(indexPath);
  } catch (err) {
    throw new SetMismatch(`snapshot ${snapshotId}: the stored index of ${bundle} is not valid: ${(err as Error).message}`, bundle);
  }
}

type Rebuilt = { failures: Map<string, Error>; made: Map<string, { files: number; bytes: number }> };

/**
 * Rebuilds the bundles' slices and big files from one `restic dump`: of `/`
 * when there are several (one repository open for all), else of the
 * bundle's data folder. When restic itself fails mid-way (a damaged pack),
 * the bundles not finished are rebuilt again one by one, which pins the
 * damage to the bundle it is in. A bundle that fails is reported (with
 * keepGoing) or fails the call.
 */
async function rebuildBundles(
  ctx: ResticContext,
  snapshotId: string,
  outDir: string,
  bundles: string[],
  keepGoing: boolean,
  signal?: AbortSignal,
): Promise<Rebuilt> {
  const failures = new Map<string, Error>();
  const made = new Map<string, { files: number; bytes: number }>();
  const fail = (b: string, err: unknown) => {
    const named = err instanceof SetMismatch ? err : new SetMismatch(`snapshot ${snapshotId}, bundle ${b}: ${(err as Error).message}`, b);
    if (!keepGoing || signal?.aborted) throw signal?.aborted ? err : named;
    failures.set(b, named);
  };
  const rebuilders = new Map<string, BundleRebuilder>();
  for (const b of bundles) {
    try {
      const index = await loadIndex(snapshotId, b, path.join(outDir, b));
      const r = new BundleRebuilder(snapshotId, b, index, path.join(outDir, b));
      await r.start();
      rebuilders.set(b, r);
    } catch (err) {
      fail(b, err);
    }
  }
  if (!rebuilders.size) return { failures, made };
  const one = bundles.length === 1 ? bundles[0]! : undefined;
  const prefix = `/${DATA_DIR}/`;
  try {
    await dumpTree(
      ctx,
      snapshotId,
      one ? bundleDataPath(one) : '/',
      async (t) => {
        signal?.throwIfAborted();
        let b = one;
        let rel = t.path;
        if (!one) {
          const slash = t.path.indexOf('/');
          if (slash < 0 || !t.path.startsWith(prefix, slash)) return; // the summary, an index, a bundle's own folder
          b = t.path.slice(0, slash);
          rel = t.path.slice(slash + prefix.length);
        }
        const r = rebuilders.get(b!);
        if (!r) return; // a bundle not asked for, or failed already
        try {
          await r.take({ ...t, path: rel });
        } catch (err) {
          if (!keepGoing || !(err instanceof SetMismatch)) throw err;
          rebuilders.delete(b!);
          await r.cleanUp(err);
          failures.set(b!, err);
        }
      },
      signal,
    );
  } catch (err) {
    for (const r of rebuilders.values()) await r.cleanUp(err);
    if (signal?.aborted || err instanceof SetMismatch) throw err;
    if (one) {
      fail(one, err);
      return { failures, made };
    }
    for (const [b, r] of rebuilders) {
      await removeOutputs(r.index, path.join(outDir, b));
      const again = await rebuildBundles(ctx, snapshotId, outDir, [b], keepGoing, signal);
      for (const [k, v] of again.failures) failures.set(k, v);
      for (const [k, v] of again.made) made.set(k, v);
    }
    return { failures, made };
  }
  for (const [b, r] of rebuilders) {
    try {
      await r.finish();
      made.set(b, { files: r.files, bytes: r.bytes });
    } catch (err) {
      fail(b, err);
    }
  }
  return { failures, made };
}

/** The slices and big files of a bundle's folder (the index and manifest stay). */
async function removeOutputs(index: ManageIndex, dir: string): Promise<void> {
  for (const f of index.files) await fsp.rm(path.join(dir, f.uri), { force: true });
}
