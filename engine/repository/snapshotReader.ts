/**
 * Reading what a snapshot holds through restic, streamed: one stored file
 * (`restic dump ID PATH`) into a file or, for the small JSON ones, into
 * memory; a folder's listing (`restic ls --json`); and a folder as a tar
 * stream (`restic dump --archive tar`), entry by entry.
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import readline from 'node:readline';
import tar from 'tar-stream';
import { ResticFailed, SnapshotNotFound } from './errors.js';
import { exitError, runRestic, spawnRestic, watchRestic, withStaleLocksRemoved, type ResticContext } from './resticProcess.js';

/** JSON files of a snapshot read into memory are at most this big (an index of a million entries fits). */
const MAX_JSON_BYTES = 512 * 1024 * 1024;

export interface StoredNode {
  name: string;
  type: 'file' | 'dir' | string;
  /** Path inside the snapshot, starting with '/'. */
  path: string;
  size?: number;
}

/** The nodes of `dir` in the snapshot (and below it, with `recursive`), in restic's order. */
export async function listStored(
  ctx: ResticContext,
  snapshotId: string,
  dir: string,
  opts: { recursive?: boolean; signal?: AbortSignal } = {},
): Promise<StoredNode[]> {
  const nodes: StoredNode[] = [];
  await runRestic(ctx, {
    args: ['ls', '--json', ...(opts.recursive ? ['--recursive'] : []), snapshotId, dir],
    onJson: (m) => {
      if (m.struct_type === 'node' && typeof m.path === 'string') nodes.push(m as unknown as StoredNode);
    },
    signal: opts.signal,
  });
  return nodes;
}

/** Streams one stored file into `target` (created 0600, never over an existing file). */
export function dumpToFile(ctx: ResticContext, snapshotId: string, storedPath: string, target: string, signal?: AbortSignal): Promise<void> {
  return withStaleLocksRemoved(ctx, () => dumpToFileOnce(ctx, snapshotId, storedPath, target, signal));
}

async function dumpToFileOnce(ctx: ResticContext, snapshotId: string, storedPath: string, target: string, signal?: AbortSignal): Promise<void> {
  const child = spawnRestic(ctx, { args: ['dump', snapshotId, storedPath], signal });
  const watched = watchRestic(ctx, child, signal);
  const written = pipeline(child.stdout, createWriteStream(target, { flags: 'wx', mode: 0o600 }));
  try {
    const [r] = await Promise.all([watched.done, written.catch((err: unknown) => (child.kill('SIGTERM'), Promise.reject(err)))]);
    const err = exitError(ctx, 'dump', r);
    if (err) throw notFoundAsSnapshot(err, snapshotId, storedPath);
  } catch (err) {
    await rm(target, { force: true });
    throw err;
  }
}

/** One small stored file's text (JSON summaries and indexes). */
export function dumpText(ctx: ResticContext, snapshotId: string, storedPath: string, signal?: AbortSignal): Promise<string> {
  return withStaleLocksRemoved(ctx, () => dumpTextOnce(ctx, snapshotId, storedPath, signal));
}

async function dumpTextOnce(ctx: ResticContext, snapshotId: string, storedPath: string, signal?: AbortSignal): Promise<string> {
  const child = spawnRestic(ctx, { args: ['dump', snapshotId, storedPath], signal });
  const watched = watchRestic(ctx, child, signal);
  const chunks: Buffer[] = [];
  let bytes = 0;
  child.stdout.on('data', (c: Buffer) => {
    bytes += c.length;
    if (bytes > MAX_JSON_BYTES) child.kill('SIGTERM');
    else chunks.push(c);
  });
  const r = await watched.done;
  if (bytes > MAX_JSON_BYTES) throw new ResticFailed(`${storedPath} of snapshot ${snapshotId} is larger than ${MAX_JSON_BYTES} bytes`);
  const err = exitError(ctx, 'dump', r);
  if (err) throw notFoundAsSnapshot(err, snapshotId, storedPath);
  return Buffer.concat(chunks).toString('utf8');
}

function notFoundAsSnapshot(err: Error, snapshotId: string, storedPath: string): Error {
  if (/not found in snapshot|no matching ID|no snapshot matched/i.test(err.message)) {
    return new SnapshotNotFound(`snapshot ${snapshotId} holds no ${storedPath}: ${err.message}`);
  }
  return err;
}

export interface TarEntry {
  /** Path relative to the dumped folder ('' never: the folder itself is not listed). */
  path: string;
  type: string;
  size: number;
  /** The entry's bytes: read them to the end (or not at all) before asking for the next. */
  stream: AsyncIterable<Buffer>;
}

/**
 * Every entry of `dir` in the snapshot, in restic's order (a folder's nodes
 * sorted by name, depth first, a folder before its contents: the order the
 * packer walks in). `visit` is awaited for each entry, which is backpressure
 * all the way to restic. Throws restic's error when the dump fails.
 */
export function dumpTree(ctx: ResticContext, snapshotId: string, dir: string, visit: (entry: TarEntry) => Promise<void>, signal?: AbortSignal): Promise<void> {
  return withStaleLocksRemoved(ctx, () => dumpTreeOnce(ctx, snapshotId, dir, visit, signal));
}

async function dumpTreeOnce(
  ctx: ResticContext,
  snapshotId: string,
  dir: string,
  visit: (entry: TarEntry) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const child = spawnRestic(ctx, { args: ['dump', '--archive', 'tar', snapshotId, dir], signal });
  const watched = watchRestic(ctx, child, signal);
  const extract = tar.extract();
  child.stdout.on('error', (err) => extract.destroy(err));
  child.stdout.pipe(extract as unknown as NodeJS.WritableStream);
  const prefix = `${dir.replace(/^\/+/, '').replace(/\/+$/, '')}/`;
  let failure: unknown;
  try {
    for await (const entry of extract) {
      const name = entry.header.name.replace(/\/+$/, '');
      const rel = name.startsWith(prefix) ? name.slice(prefix.length) : name;
      let consumed = false;
      const stream = (async function* () {
        consumed = true;
        for await (const chunk of entry as AsyncIterable<Buffer>) yield chunk;
      })();
      await visit({ path: rel, type: entry.header.type ?? 'file', size: entry.header.size ?? 0, stream });
      if (!consumed) for await (const _ of entry as AsyncIterable<Buffer>) void _;
    }
  } catch (err) {
    failure = err;
    child.kill('SIGTERM');
  }
  const r = await watched.done;
  const err = exitError(ctx, 'dump', r);
  // restic's own error says more than a truncated tar stream does.
  if (err && !(failure && r.signal === 'SIGTERM')) throw notFoundAsSnapshot(err, snapshotId, dir);
  if (failure) throw failure;
}

/** Lines of a stored text file, streamed (manifests). */
export function dumpLines(ctx: ResticContext, snapshotId: string, storedPath: string, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
  return withStaleLocksRemoved(ctx, () => dumpLinesOnce(ctx, snapshotId, storedPath, onLine, signal));
}

async function dumpLinesOnce(ctx: ResticContext, snapshotId: string, storedPath: string, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
  const child = spawnRestic(ctx, { args: ['dump', snapshotId, storedPath], signal });
  const watched = watchRestic(ctx, child, signal);
  const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  lines.on('line', onLine);
  const r = await watched.done;
  const err = exitError(ctx, 'dump', r);
  if (err) throw notFoundAsSnapshot(err, snapshotId, storedPath);
}
