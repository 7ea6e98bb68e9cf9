// The soak's checks and device changes: snapshots of a bundle's data (what a
// backup must hold and a restore must give back), the check of an increment
// against the device, and random edits between sessions.
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadBundle } from '../dist/engine/device.js';
import { readManifest } from '../dist/engine/formats/manifest.js';
import { readManageIndex } from '../dist/engine/formats/manageIndex.js';
import { walkBundle } from '../dist/engine/walk.js';
import { mulberry32 } from '../dist/engine/sampleDevice.js';
import { bundlePaths } from '../dist/common/device.js';
import { sha256File } from '../dist/client/sets/verify.js';

/** Every entry under `dataDir` the profile selects: path → { kind, size, mode, mtimeMs, sha256 } (files hashed). */
export async function snapshotDir(dataDir, profile = { excludes: [] }) {
  const out = new Map();
  for await (const item of walkBundle(dataDir, profile)) {
    if (item.type !== 'entry') continue;
    out.set(item.path, {
      kind: item.kind,
      size: item.size,
      mode: item.mode,
      mtimeMs: item.mtimeMs,
      sha256: item.kind === 'file' ? await sha256File(item.absPath) : '',
    });
  }
  return out;
}

/** The bundle's data on the device, its profile applied: what a backup of it now must hold. */
export async function snapshotBundle(dataRoot, bundleName) {
  const loaded = await loadBundle(dataRoot, bundleName);
  if (!loaded.ok) throw new Error(`${bundleName}: ${loaded.error.message}`);
  return snapshotDir(bundlePaths(dataRoot, bundleName).data, loaded.config);
}

/**
 * `got` against `want`: `lost` lists files (and folders) missing or whose
 * bytes differ, and anything extra; `metadata` lists mode and mtime
 * differences (mtime within 1 ms).
 */
export function compareSnapshots(want, got) {
  const lost = [];
  const metadata = [];
  for (const [p, w] of want) {
    const g = got.get(p);
    if (!g) lost.push(`${p}: missing`);
    else if (g.kind !== w.kind) lost.push(`${p}: ${g.kind}, expected ${w.kind}`);
    else if (w.kind === 'file' && (g.size !== w.size || g.sha256 !== w.sha256)) lost.push(`${p}: bytes differ`);
    else {
      if (g.mode !== w.mode) metadata.push(`${p}: mode ${g.mode.toString(8)}, expected ${w.mode.toString(8)}`);
      if (Math.abs(g.mtimeMs - w.mtimeMs) > 1) metadata.push(`${p}: mtime ${g.mtimeMs}, expected ${w.mtimeMs}`);
    }
  }
  for (const p of got.keys()) if (!want.has(p)) lost.push(`${p}: not in the source`);
  return { lost, metadata };
}

export const filesIn = (snap) => [...snap.values()].filter((e) => e.kind === 'file').length;

/** True when the bundle's index in the set is an increment (it has an `incremental` block). */
export async function isIncrement(setDir, bundleName) {
  return (await readManageIndex(path.join(setDir, bundleName, 'manage.json'))).incremental !== undefined;
}

/**
 * An increment of `bundleName` in `setDir` against the device's data now
 * (`snap`): every handed-over file is there with the SHA-256 its index
 * names; every file entry in them has the device's bytes; the new full
 * manifest lists exactly the device's entries (bytes, modes, mtimes).
 */
export async function checkIncrement(setDir, bundleName, snap) {
  const dir = path.join(setDir, bundleName);
  const index = await readManageIndex(path.join(dir, 'manage.json'));
  const problems = [];
  for (const f of index.files) {
    const sha = await sha256File(path.join(dir, f.uri)).catch(() => undefined);
    if (sha === undefined) problems.push(`${f.uri}: listed in the index but not handed over`);
    else if (sha !== f.sha256) problems.push(`${f.uri}: SHA-256 differs from the index`);
    for (const e of f.entries) {
      if (e.kind !== 'file') continue;
      const now = snap.get(e.path);
      if (!now || now.sha256 !== e.sha256) problems.push(`${e.path}: in the increment, not with the device's bytes`);
    }
  }
  const manifest = await readManifest(path.join(dir, 'manifest.jsonl')).catch((err) => problems.push(`manifest: ${err.message}`));
  if (manifest) {
    const listed = new Map(
      [...manifest.entries.values()].map((e) => [
        e.path,
        { kind: e.kind, size: e.size, mode: e.mode, mtimeMs: e.mtimeMs, sha256: e.kind === 'file' ? e.sha256 : '' },
      ]),
    );
    const c = compareSnapshots(snap, listed);
    problems.push(...[...c.lost, ...c.metadata].map((p) => `manifest: ${p}`));
  }
  return problems;
}

/** A small seeded PRNG in [0, 1): the sample device's mulberry32, scaled. */
export function prng(seed) {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

async function regularFiles(dir, rel = '') {
  const out = [];
  for (const d of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(...(await regularFiles(dir, r)));
    else if (d.isFile()) out.push(r);
  }
  return out;
}

const randomBytes = (rand, n) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
};

/**
 * Edits the bundle's data between sessions, as an application would: rewrites
 * a few files, adds one (sometimes over the 2 MiB hand-over line), deletes one.
 * Returns what it did.
 */
export async function mutateBundle(dataRoot, bundleName, rand, counter) {
  const data = bundlePaths(dataRoot, bundleName).data;
  const files = await regularFiles(data);
  const pick = () => files.splice(Math.floor(rand() * files.length), 1)[0];
  const done = { rewritten: 0, added: 0, deleted: 0 };
  for (let i = 0, n = 1 + Math.floor(rand() * 3); i < n && files.length > 2; i++) {
    await writeFile(path.join(data, pick()), randomBytes(rand, Math.floor(rand() * 16 * 1024)));
    done.rewritten++;
  }
  await mkdir(path.join(data, 'soak'), { recursive: true });
  const big = rand() < 0.1;
  const added = path.join(data, 'soak', `new-${counter}.bin`);
  if (big) await writeFile(added, Buffer.alloc(2 * 1024 * 1024 + 4096, counter & 0xff));
  else await writeFile(added, randomBytes(rand, Math.floor(rand() * 8 * 1024)));
  done.added++;
  if (files.length > 2) {
    await rm(path.join(data, pick()));
    done.deleted++;
  }
  return done;
}
