/**
 * Lays a backup set folder out in a staging folder the way a snapshot stores
 * it (storedLayout.ts): each bundle's tar slices unpacked into files under
 * `<bundle>/data/`, its big files hard-linked there (copied only when a link
 * cannot be made), the index, manifest, capabilities and summary beside them.
 * Every entry is checked against the bundle's index on the way — name, kind,
 * size and SHA-256, and every slice's and big file's own size and SHA-256 —
 * so nothing that does not match its index is ever stored. Streams only.
 *
 * Modes and mtimes of the index are applied to what is staged, with the
 * owner's read bit (files) or rwx bits (folders) added so that restic can
 * read what it stores; the index stays the authority on modes at restore. A
 * linked big file keeps the set file's own mode and mtime (changing them
 * would change the set's file too).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { readManageIndex } from '../formats/manageIndex.js';
import type { HandedFile, IndexEntry, ManageIndex } from '../../common/manageIndex.js';
import { manifestPathProblem } from '../../common/manifest.js';
import { SetMismatch } from './errors.js';
import { DATA_DIR, INDEX_FILE, SET_CAPABILITIES, SET_MANIFEST, SET_SUMMARY, SetSummarySchema, bundleNameProblem, type SetSummary } from './storedLayout.js';

export interface StagedSet {
  summary: SetSummary;
  /** Bundles staged (state done in the summary, with an index). */
  bundles: string[];
  /** Bundles of the summary not staged (not done). */
  notStored: string[];
  /** Files and bytes staged under the bundles' data folders. */
  files: number;
  bytes: number;
}

export interface StageOptions {
  /** Replaces the summary's fields in the staged backup_set.json (the base by snapshot). */
  summaryPatch?: (summary: SetSummary) => SetSummary;
  signal?: AbortSignal;
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
  const summary = await readSetSummary(setDir);
  const done = summary.bundles.filter((b) => b.state === 'done').map((b) => b.bundleName);
  for (const b of done) {
    const why = bundleNameProblem(b);
    if (why) throw new SetMismatch(`${setDir}: ${why}`, b);
  }
  const staged = { files: 0, bytes: 0 };
  for (const bundle of done) {
    opts.signal?.throwIfAborted();
    await stageBundle(path.join(setDir, bundle), path.join(stageDir, bundle), bundle, staged, opts.signal);
  }
  await fsp.copyFile(path.join(setDir, SET_CAPABILITIES), path.join(stageDir, SET_CAPABILITIES)).catch((err: unknown) => {
    throw new SetMismatch(`${setDir} is not a whole backup set: ${SET_CAPABILITIES} cannot be read (${(err as Error).message})`);
  });
  const stored = opts.summaryPatch ? opts.summaryPatch(summary) : summary;
  await fsp.writeFile(path.join(stageDir, SET_SUMMARY), JSON.stringify(stored, null, 2), { mode: 0o600 });
  return {
    summary: stored,
    bundles: done,
    notStored: summary.bundles.filter((b) => b.state !== 'done').map((b) => b.bundleName),
    ...staged,
  };
}

const fileMode = (mode: number) => (mode & 0o7777) | 0o400;
const dirMode = (mode: number) => (mode & 0o7777) | 0o700;

async function stageBundle(from: string, to: string, bundle: string, staged: { files: number; bytes: number }, signal?: AbortSignal): Promise<void> {
  let index: ManageIndex;
  try {
    index = await readManageIndex(path.join(from, INDEX_FILE));
  } catch (err) {
    throw new SetMismatch(`${bundle}: its index ${path.join(from, INDEX_FILE)} cannot be read: ${(err as Error).message}`, bundle);
  }
  const data = path.join(to, DATA_DIR);
  await fsp.mkdir(data, { recursive: true, mode: 0o700 });
  const dirs: IndexEntry[] = [];
  const seen = new Set<string>();
  for (const f of index.files) {
    signal?.throwIfAborted();
    for (const e of f.entries) {
      const why = manifestPathProblem(e.path);
      if (why) throw new SetMismatch(`${bundle}: the index lists "${e.path}" (${why})`, bundle);
      if (seen.has(e.path)) throw new SetMismatch(`${bundle}: the index lists ${e.path} twice`, bundle);
      seen.add(e.path);
    }
    if (f.kind === 'tar') await unpackSlice(path.join(from, f.uri), f, data, bundle, dirs, staged);
    else await placeBigFile(path.join(from, f.uri), f, data, bundle, staged);
  }
  await fsp.copyFile(path.join(from, INDEX_FILE), path.join(to, INDEX_FILE));
  await fsp.copyFile(path.join(from, SET_MANIFEST), path.join(to, SET_MANIFEST)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  // Folders last, deepest first: making their contents moved their mtimes.
  dirs.sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const d of dirs) {
    const p = path.join(data, d.path);
    await fsp.chmod(p, dirMode(d.mode));
    await fsp.utimes(p, d.mtimeMs / 1000, d.mtimeMs / 1000);
  }
}

/** Streams one slice through its SHA-256 into files, checking each entry against the index as it comes. */
async function unpackSlice(
  slicePath: string,
  f: HandedFile,
  data: string,
  bundle: string,
  dirs: IndexEntry[],
  staged: { files: number; bytes: number },
): Promise<void> {
  const bad = (why: string) => new SetMismatch(`${bundle}/${f.uri}: ${why}`, bundle);
  const sliceHash = createHash('sha256');
  let sliceBytes = 0;
  const input = createReadStream(slicePath);
  const extract = tar.extract();
  input.on('data', (c) => {
    sliceHash.update(c as Buffer);
    sliceBytes += c.length;
  });
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  let i = 0;
  try {
    for await (const entry of extract) {
      const e = f.entries[i++];
      const name = entry.header.name.replace(/\/$/, '');
      if (!e) throw bad(`holds more entries than the index lists (${name})`);
      if (name !== e.path) throw bad(`entry ${i - 1} is ${name}, the index says ${e.path}`);
      const target = path.join(data, e.path);
      if (e.kind === 'dir') {
        if (entry.header.type !== 'directory') throw bad(`${e.path} is a ${entry.header.type} in the slice, a folder in the index`);
        for await (const _ of entry as AsyncIterable<Buffer>) void _;
        await fsp.mkdir(target, { recursive: true, mode: 0o700 });
        dirs.push(e);
        continue;
      }
      if (entry.header.type !== 'file') throw bad(`${e.path} is a ${entry.header.type} in the slice, a file in the index`);
      if (entry.header.size !== e.size) throw bad(`${e.path} has ${entry.header.size} bytes in the slice, ${e.size} in the index`);
      await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      const hash = createHash('sha256');
      await pipeline(
        async function* () {
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            hash.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(target, { flags: 'wx', mode: 0o600 }),
      );
      if (hash.digest('hex') !== e.sha256) throw bad(`${e.path}'s SHA-256 differs from the index`);
      await fsp.chmod(target, fileMode(e.mode));
      await fsp.utimes(target, e.mtimeMs / 1000, e.mtimeMs / 1000);
      staged.files++;
      staged.bytes += e.size;
    }
  } catch (err) {
    input.destroy();
    if (err instanceof SetMismatch) throw err;
    throw bad(`cannot be read as a slice: ${(err as Error).message}`);
  }
  if (i !== f.entries.length) throw bad(`holds ${i} entries, the index lists ${f.entries.length}`);
  if (sliceBytes !== f.size) throw bad(`has ${sliceBytes} bytes, the index says ${f.size}`);
  if (sliceHash.digest('hex') !== f.sha256) throw bad(`its SHA-256 differs from the index`);
}

/** Links (else copies) a big file into place and checks its bytes against the index. */
async function placeBigFile(file: string, f: HandedFile, data: string, bundle: string, staged: { files: number; bytes: number }): Promise<void> {
  const bad = (why: string) => new SetMismatch(`${bundle}/${f.uri}: ${why}`, bundle);
  const e = f.entries[0];
  if (f.entries.length !== 1 || !e || e.kind !== 'file') throw bad('a big file must hold exactly one file entry');
  const target = path.join(data, e.path);
  await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  let linked = true;
  try {
    await fsp.link(file, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw bad('missing from the set');
    linked = false;
    await fsp.copyFile(file, target, fsp.constants.COPYFILE_EXCL | fsp.constants.COPYFILE_FICLONE);
  }
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(target, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  const sha = hash.digest('hex');
  if (size !== f.size || size !== e.size) throw bad(`has ${size} bytes, the index says ${f.size}`);
  if (sha !== f.sha256 || sha !== e.sha256) throw bad(`its SHA-256 differs from the index`);
  if (!linked) {
    await fsp.chmod(target, fileMode(e.mode));
    await fsp.utimes(target, e.mtimeMs / 1000, e.mtimeMs / 1000);
  }
  staged.files++;
  staged.bytes += size;
}
