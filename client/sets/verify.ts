/**
 * Verification, for the tests, the demo, the bench and `ohbackup check DIR`.
 * checkSetFolder: a set folder against its own indexes. compareBundleSet: a
 * backup set against the device it came from (every handed-over file's SHA-256
 * and every tar entry against the index, every file the profile selects
 * against the set). compareRestoredBundle: restored data against its source
 * (entries, kinds, bytes, modes, mtimes within 1 ms).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { loadBundle } from '../../engine/device.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { walkBundle, type WalkProfile } from '../../engine/walk.js';
import { bundlePaths } from '../../common/device.js';

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

interface TarEntrySeen {
  name: string;
  sha256: string;
}

/** The entries of a tar file in order, each hashed as it streams past. */
async function tarEntries(tarPath: string): Promise<TarEntrySeen[]> {
  const extract = tar.extract();
  const input = createReadStream(tarPath);
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  const out: TarEntrySeen[] = [];
  for await (const entry of extract) {
    const hash = createHash('sha256');
    for await (const chunk of entry as AsyncIterable<Buffer>) hash.update(chunk);
    out.push({ name: entry.header.name, sha256: hash.digest('hex') });
  }
  return out;
}

type SeenEntry = { kind: string; sha256: string; size: number; mode: number };

/**
 * A bundle of a set folder against its own index: every slice and big file
 * there with its SHA-256, every tar entry where the index puts it with its
 * bytes' SHA-256. Returns the mismatches and the entries the index lists.
 */
async function checkBundleFiles(setDir: string, bundleName: string, modes: boolean): Promise<{ problems: string[]; seen: Map<string, SeenEntry> }> {
  const problems: string[] = [];
  const dir = path.join(setDir, bundleName);
  const index = await readManageIndex(path.join(dir, 'manage.json'));
  const seen = new Map<string, SeenEntry>();
  for (const f of index.files) {
    const file = path.join(dir, f.uri);
    const st = await lstat(file).catch(() => undefined);
    if (!st) {
      problems.push(`${f.uri}: listed in the index but not handed over`);
      continue;
    }
    if (modes && (st.mode & 0o777) !== 0o600) problems.push(`${f.uri}: mode ${(st.mode & 0o777).toString(8)}, not 600`);
    if ((await sha256File(file)) !== f.sha256) problems.push(`${f.uri}: SHA-256 differs from the index`);
    if (f.kind === 'file') {
      const e = f.entries[0]!;
      seen.set(e.path, { kind: 'file', sha256: f.sha256, size: f.size, mode: e.mode });
      continue;
    }
    const entries = await tarEntries(file).catch((err: Error) => {
      problems.push(`${f.uri}: not a readable tar (${err.message})`);
      return [];
    });
    for (const [i, e] of f.entries.entries()) {
      const t = entries[i];
      if (!t || t.name !== e.path) problems.push(`${f.uri}: entry ${i} is ${t?.name}, the index says ${e.path}`);
      else if (e.kind === 'file' && t.sha256 !== e.sha256) problems.push(`${e.path}: SHA-256 in the tar differs from the index`);
      seen.set(e.path, { kind: e.kind, sha256: e.sha256, size: e.size, mode: e.mode });
    }
  }
  return { problems, seen };
}

export interface SetCheck {
  set: string;
  ok: boolean;
  /** Every bundle the set's summary says is done, with what does not match its index. */
  bundles: Array<{ bundleName: string; problems: string[] }>;
}

/** A backup set folder against its indexes (`ohbackup check DIR`): every done bundle's slices and big files. */
export async function checkSetFolder(setDir: string): Promise<SetCheck> {
  const set = path.resolve(setDir);
  const summary = JSON.parse(
    await readFile(path.join(set, 'backup_set.json'), 'utf8').catch((err: Error) => {
      throw new Error(`${set} is not a backup set: ${err.message}`);
    }),
  ) as { bundles?: Array<{ bundleName: string; state: string }> };
  const bundles: SetCheck['bundles'] = [];
  for (const b of (summary.bundles ?? []).filter((x) => x.state === 'done')) {
    const problems = await checkBundleFiles(set, b.bundleName, false).then(
      (r) => r.problems,
      (err: Error) => [`its index cannot be read: ${err.message}`],
    );
    bundles.push({ bundleName: b.bundleName, problems });
  }
  return { set, ok: bundles.every((b) => !b.problems.length), bundles };
}

/** Returns a list of mismatches (empty when the bundle's set matches the device byte for byte). */
export async function compareBundleSet(setDir: string, dataRoot: string, bundleName: string): Promise<string[]> {
  const { problems, seen } = await checkBundleFiles(setDir, bundleName, true);
  const loaded = await loadBundle(dataRoot, bundleName);
  if (!loaded.ok) return [...problems, `${bundleName}: ${loaded.error.message}`];
  let sourceCount = 0;
  for await (const item of walkBundle(bundlePaths(dataRoot, bundleName).data, loaded.config)) {
    if (item.type !== 'entry') continue;
    sourceCount += 1;
    const got = seen.get(item.path);
    if (!got) problems.push(`${item.path}: on the device but not in the set`);
    else if (got.kind !== item.kind) problems.push(`${item.path}: kind ${got.kind}, device has ${item.kind}`);
    else if (item.kind === 'file') {
      if (got.sha256 !== (await sha256File(item.absPath))) problems.push(`${item.path}: bytes differ from the device`);
      if (got.mode !== item.mode) problems.push(`${item.path}: mode differs`);
    }
  }
  if (sourceCount !== seen.size) problems.push(`${bundleName}: the set has ${seen.size} entries, the device ${sourceCount}`);
  return problems;
}

interface Seen {
  kind: string;
  size: number;
  mode: number;
  mtimeMs: number;
  abs: string;
}

async function listing(dir: string, profile: WalkProfile): Promise<Map<string, Seen>> {
  const out = new Map<string, Seen>();
  for await (const item of walkBundle(dir, profile)) {
    if (item.type === 'entry') out.set(item.path, { kind: item.kind, size: item.size, mode: item.mode, mtimeMs: item.mtimeMs, abs: item.absPath });
  }
  return out;
}

/** Mismatches between `source` (with the bundle's profile applied) and everything in `restored`; empty when they match. */
export async function compareTrees(source: string, restored: string, profile: WalkProfile = { excludes: [] }): Promise<string[]> {
  const want = await listing(source, profile);
  const got = await listing(restored, { excludes: [] });
  const problems: string[] = [];
  for (const [p, w] of want) {
    const g = got.get(p);
    if (!g) {
      problems.push(`${p}: missing`);
      continue;
    }
    if (g.kind !== w.kind) {
      problems.push(`${p}: ${g.kind}, expected ${w.kind}`);
      continue;
    }
    if (g.mode !== w.mode) problems.push(`${p}: mode ${g.mode.toString(8)}, expected ${w.mode.toString(8)}`);
    if (Math.abs(g.mtimeMs - w.mtimeMs) > 1) problems.push(`${p}: mtime ${g.mtimeMs}, expected ${w.mtimeMs}`);
    if (w.kind === 'file' && (g.size !== w.size || (await sha256File(g.abs)) !== (await sha256File(w.abs)))) problems.push(`${p}: bytes differ`);
  }
  for (const p of got.keys()) if (!want.has(p)) problems.push(`${p}: restored but not in the source`);
  return problems;
}

/**
 * `bundleName`'s data on the device at `sourceRoot` (its profile applied)
 * against `targetBundle`'s data restored under `restoredRoot`.
 */
export async function compareRestoredBundle(sourceRoot: string, restoredRoot: string, bundleName: string, targetBundle = bundleName): Promise<string[]> {
  const loaded = await loadBundle(sourceRoot, bundleName);
  if (!loaded.ok) return [`${bundleName}: ${loaded.error.message}`];
  return compareTrees(bundlePaths(sourceRoot, bundleName).data, bundlePaths(restoredRoot, targetBundle).data, loaded.config);
}
