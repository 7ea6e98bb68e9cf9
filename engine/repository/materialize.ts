/**
 * Rebuilds a backup set folder from a snapshot, exactly as `ohbackup backup`
 * wrote it and the restore path reads it: `backup_set.json`,
 * `capabilities.json`, and per bundle its index, manifest, tar slices and
 * big files (files 0600, folders 0700).
 *
 * Each bundle's stored files stream out of restic in one `dump --archive
 * tar` and go straight into the slice (or big file) the index puts them in,
 * re-made with the packer's own header (engine/formats/sliceEntry.ts) and
 * tar writer: the slices come out byte for byte as they were handed over, and
 * are checked so — every entry's size and SHA-256, then every slice's and big
 * file's size and SHA-256 against the index. restic's order is the packer's
 * walk order, so entries normally arrive in slice order; one that does not
 * is spooled to a private file until its turn (never held in memory).
 * A file becomes visible under its name only once it matched.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { readManageIndex } from '../formats/manageIndex.js';
import { ErrorCode, describeCode } from '../../common/errors.js';
import type { HandedFile, IndexEntry, ManageIndex } from '../../common/manageIndex.js';
import { sliceEntryHeader } from '../formats/sliceEntry.js';
import { ResticFailed, SetMismatch } from './errors.js';
import { dumpText, dumpTree, type TarEntry } from './snapshotReader.js';
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
  for (const b of bundles) {
    opts.signal?.throwIfAborted();
    try {
      const r = await materializeBundle(ctx, snapshotId, b, path.join(outDir, b), opts.signal);
      opts.onBundle?.(b, r.files, r.bytes);
    } catch (caught) {
      // Name the snapshot and bundle, whatever failed (restic reading a damaged pack says neither).
      const err =
        caught instanceof SetMismatch || opts.signal?.aborted
          ? caught
          : new SetMismatch(`snapshot ${snapshotId}, bundle ${b}: ${(caught as Error).message}`, b);
      if (!opts.keepGoing || opts.signal?.aborted) throw err;
      await fsp.rm(path.join(outDir, b), { recursive: true, force: true });
      failed.push({ bundleName: b, error: { code: ErrorCode.UNTAR_FAILED, message: `${describeCode(ErrorCode.UNTAR_FAILED)}: ${(err as Error).message}` } });
    }
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

/** One bundle's folder of the set (its index and manifest restored already): slices and big files. */
async function materializeBundle(
  ctx: ResticContext,
  snapshotId: string,
  bundle: string,
  dir: string,
  signal?: AbortSignal,
): Promise<{ files: number; bytes: number }> {
  const indexPath = path.join(dir, INDEX_FILE);
  if (!(await fsp.stat(indexPath).catch(() => undefined))) throw new SetMismatch(`snapshot ${snapshotId} stores no index of ${bundle}`, bundle);
  let index: ManageIndex;
  try {
    index = await readManageIndex(indexPath);
  } catch (err) {
    throw new SetMismatch(`snapshot ${snapshotId}: the stored index of ${bundle} is not valid: ${(err as Error).message}`, bundle);
  }
  if (index.files.length === 0) return { files: 0, bytes: 0 };
  const rebuilt = await withSpool(dir, (spool) => rebuildOutputs(ctx, snapshotId, bundle, index, dir, spool, signal));
  return rebuilt;
}

async function withSpool<T>(dir: string, fn: (spool: string) => Promise<T>): Promise<T> {
  const spool = await fsp.mkdtemp(path.join(dir, '.spool-'));
  try {
    return await fn(spool);
  } finally {
    await fsp.rm(spool, { recursive: true, force: true });
  }
}

type Place = { kind: 'slice'; slice: number; entry: number } | { kind: 'big'; file: HandedFile };

/** The slice's tar writer, drained into `<uri>.partial` through a SHA-256. */
class SliceOut {
  readonly pack = tar.pack();
  readonly hash = createHash('sha256');
  bytes = 0;
  next = 0;
  readonly written: Promise<void>;
  constructor(
    readonly handed: HandedFile,
    readonly partial: string,
  ) {
    const pack = this.pack;
    const count = (chunk: Buffer) => {
      this.hash.update(chunk);
      this.bytes += chunk.length;
    };
    this.written = pipeline(
      async function* (this: void) {
        for await (const chunk of pack as AsyncIterable<Buffer>) yield chunk;
      },
      async function* (this: void, source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          count(chunk);
          yield chunk;
        }
      },
      createWriteStream(partial, { flags: 'wx', mode: 0o600 }),
    );
    this.written.catch(() => undefined);
    this.pack.on('error', () => undefined);
  }
}

async function rebuildOutputs(
  ctx: ResticContext,
  snapshotId: string,
  bundle: string,
  index: ManageIndex,
  dir: string,
  spool: string,
  signal?: AbortSignal,
): Promise<{ files: number; bytes: number }> {
  const bad = (why: string) => new SetMismatch(`snapshot ${snapshotId}, bundle ${bundle}: ${why}`, bundle);
  const slices = index.files.filter((f) => f.kind === 'tar');
  const places = new Map<string, Place>();
  slices.forEach((f, s) => f.entries.forEach((e, i) => places.set(e.path, { kind: 'slice', slice: s, entry: i })));
  for (const f of index.files) if (f.kind === 'file') places.set(f.entries[0]!.path, { kind: 'big', file: f });
  /** Entries that came before their turn: path → spool file. */
  const spooled = new Map<string, string>();
  const done = new Set<string>();
  let spoolCount = 0;
  let current = 0;
  let out: SliceOut | undefined;
  let files = 0;
  let bytes = 0;

  const checkEntry = (e: IndexEntry, t: { type: string; size: number }) => {
    const want = e.kind === 'dir' ? 'directory' : 'file';
    if (t.type !== want) throw bad(`${e.path} is stored as a ${t.type}, the index says ${e.kind}`);
    if (e.kind === 'file' && t.size !== e.size) throw bad(`${e.path} is stored with ${t.size} bytes, the index says ${e.size}`);
  };

  /** Writes one entry into the current slice from `data`, checking its SHA-256. */
  const addToSlice = async (e: IndexEntry, data: AsyncIterable<Buffer>) => {
    const s = out!;
    if (e.kind === 'dir') {
      await new Promise<void>((resolve, reject) => {
        s.pack.entry(sliceEntryHeader(e), (err) => (err ? reject(err) : resolve())).end(undefined);
      });
      return;
    }
    const hash = createHash('sha256');
    let sink!: ReturnType<tar.Pack['entry']>;
    const entryDone = new Promise<void>((resolve, reject) => {
      sink = s.pack.entry(sliceEntryHeader(e), (err) => (err ? reject(err) : resolve()));
    });
    entryDone.catch(() => undefined);
    sink.on('error', () => undefined);
    let n = 0;
    for await (const chunk of data) {
      hash.update(chunk);
      n += chunk.length;
      if (n > e.size) throw bad(`${e.path} holds more bytes than the index says (${e.size})`);
      if (!sink.write(chunk))
        await new Promise<void>((resolve, reject) => {
          sink.once('drain', resolve);
          entryDone.catch(reject);
        });
    }
    if (n !== e.size) throw bad(`${e.path} holds ${n} bytes, the index says ${e.size}`);
    if (hash.digest('hex') !== e.sha256) throw bad(`${e.path}'s SHA-256 differs from the index`);
    sink.end(undefined);
    await entryDone;
    files++;
    bytes += n;
  };

  const openSlice = () => {
    const f = slices[current]!;
    out = new SliceOut(f, path.join(dir, `${f.uri}.partial`));
  };

  const closeSlice = async () => {
    const s = out!;
    s.pack.finalize();
    await s.written;
    const f = s.handed;
    if (s.bytes !== f.size) throw bad(`the re-made ${f.uri} has ${s.bytes} bytes, the index says ${f.size}`);
    if (s.hash.digest('hex') !== f.sha256) throw bad(`the re-made ${f.uri} differs from the one handed over (SHA-256)`);
    await fsp.rename(s.partial, path.join(dir, f.uri));
    out = undefined;
    current++;
  };

  /** Moves on through the slices: writes spooled entries whose turn came, closes full slices. */
  const advance = async () => {
    for (;;) {
      if (current >= slices.length) return;
      if (!out) openSlice();
      const s = out!;
      if (s.next >= s.handed.entries.length) {
        await closeSlice();
        continue;
      }
      const e = s.handed.entries[s.next]!;
      const file = spooled.get(e.path);
      if (!file) return;
      await addToSlice(e, createReadStream(file) as AsyncIterable<Buffer>);
      spooled.delete(e.path);
      await fsp.rm(file, { force: true });
      s.next++;
    }
  };

  const writeBig = async (f: HandedFile, t: TarEntry) => {
    const e = f.entries[0]!;
    const partial = path.join(dir, `${f.uri}.partial`);
    const hash = createHash('sha256');
    let n = 0;
    await pipeline(
      async function* () {
        for await (const chunk of t.stream) {
          hash.update(chunk);
          n += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(partial, { flags: 'wx', mode: 0o600 }),
    );
    const sha = hash.digest('hex');
    if (n !== f.size || n !== e.size) throw bad(`${e.path} (${f.uri}) holds ${n} bytes, the index says ${f.size}`);
    if (sha !== f.sha256 || sha !== e.sha256) throw bad(`${e.path} (${f.uri}): its SHA-256 differs from the index`);
    await fsp.rename(partial, path.join(dir, f.uri));
    files++;
    bytes += n;
  };

  await advance();
  await dumpTree(
    ctx,
    snapshotId,
    bundleDataPath(bundle),
    async (t) => {
      signal?.throwIfAborted();
      const place = places.get(t.path);
      if (!place) {
        // Folders made only to hold an entry (not listed themselves) are not part of any output.
        if (t.type === 'directory') return;
        throw bad(`${t.path} is stored but not in the index`);
      }
      if (done.has(t.path) || spooled.has(t.path)) throw bad(`${t.path} is stored twice`);
      if (place.kind === 'big') {
        checkEntry(place.file.entries[0]!, t);
        await writeBig(place.file, t);
        done.add(t.path);
        return;
      }
      const e = slices[place.slice]!.entries[place.entry]!;
      checkEntry(e, t);
      done.add(t.path);
      if (place.slice === current && out && place.entry === out.next) {
        await addToSlice(e, t.stream);
        out.next++;
        await advance();
        return;
      }
      // Before its turn: kept on disk until the slices before it are complete.
      const file = path.join(spool, String(spoolCount++));
      await pipeline(
        async function* () {
          for await (const chunk of t.stream) yield chunk;
        },
        createWriteStream(file, { flags: 'wx', mode: 0o600 }),
      );
      spooled.set(t.path, file);
    },
    signal,
  ).catch(async (err: unknown) => {
    if (out) {
      out.pack.destroy(err instanceof Error ? err : new Error(String(err)));
      await out.written.catch(() => undefined);
      await fsp.rm(out.partial, { force: true });
    }
    throw err;
  });
  if (current < slices.length || spooled.size) {
    const missing = slices
      .slice(current)
      .flatMap((f, k) => f.entries.slice(k === 0 && out ? out.next : 0))
      .filter((e) => !done.has(e.path))
      .map((e) => e.path);
    if (out) {
      out.pack.destroy(new Error('incomplete'));
      await out.written.catch(() => undefined);
      await fsp.rm(out.partial, { force: true });
    }
    throw bad(`the snapshot lacks ${missing.length} entr${missing.length === 1 ? 'y' : 'ies'} of the index (first: ${missing[0] ?? '?'})`);
  }
  for (const f of index.files) {
    if (f.kind === 'file' && !done.has(f.entries[0]!.path)) throw bad(`the snapshot lacks ${f.entries[0]!.path} (${f.uri})`);
  }
  return { files, bytes };
}

export { DATA_DIR };
