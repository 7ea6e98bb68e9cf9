// The bench's device: bundles in the device layout (bundle.json,
// backup_config.json, data/), planned from one seed before anything is
// written, contents from the bench's own PRNG (incompressible), written in
// chunks so no file is ever whole in memory.
import { closeSync, ftruncateSync, mkdirSync, openSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Rng } from './prng.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;

/** Sizes of the timed data set: full, or a tenth with `quick`; `factor` scales files and big files (the --scale curve). */
export function datasetShape(quick, factor = 1) {
  const k = (quick ? 0.1 : 1) * factor;
  return {
    bundles: 8,
    files: Math.max(1, Math.round(2000 * k)),
    folders: 40,
    bigFiles: 2,
    bigBytes: Math.round(24 * MiB * k),
    minBytes: 512,
    maxBytes: 64 * KiB,
  };
}

const chunk = Buffer.alloc(CHUNK);
const words = new Uint32Array(chunk.buffer, chunk.byteOffset, CHUNK / 4);

/** Writes `size` PRNG bytes (stream `seed`) to `file`, CHUNK at a time. */
export function writeRandomFile(file, size, seed) {
  const rng = new Rng(seed);
  const fd = openSync(file, 'w', 0o644);
  try {
    for (let left = size; left > 0;) {
      const n = Math.min(CHUNK, left);
      rng.fill(n === CHUNK ? words : words.subarray(0, Math.ceil(n / 4)));
      let off = 0;
      while (off < n) off += writeSync(fd, chunk, off, n - off);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
}

function writeBundleShell(dataRoot, name) {
  const root = path.join(dataRoot, name);
  for (const d of ['data', 'backup/backup', 'backup/restore']) mkdirSync(path.join(root, d), { recursive: true });
  writeFileSync(path.join(root, 'bundle.json'), JSON.stringify({ name, versionCode: 1, versionName: '1.0.0', appIndex: 0 }, null, 2) + '\n');
  writeFileSync(path.join(root, 'backup_config.json'), JSON.stringify({ allowToBackupRestore: true }, null, 2) + '\n');
  return path.join(root, 'data');
}

/**
 * The timed data set: `shape.bundles` bundles `com.bench.app<i>`, each with
 * `shape.files` files of minBytes–maxBytes (skewed towards small: min + (max-min)·u²)
 * spread over `shape.folders` folders, plus `shape.bigFiles` big files.
 * Returns the plan (paths, sizes) so later steps can pick files deterministically.
 */
export function writeDataset(dataRoot, shape, seed, prefix = 'com.bench.app') {
  const plan = new Rng(seed);
  const bundles = [];
  for (let b = 0; b < shape.bundles; b++) {
    const name = `${prefix}${b}`;
    const data = writeBundleShell(dataRoot, name);
    const folders = Array.from({ length: shape.folders }, (_, k) => `g${k % 5}/folder-${String(k).padStart(2, '0')}`);
    for (const f of folders) mkdirSync(path.join(data, f), { recursive: true });
    const files = [];
    for (let i = 0; i < shape.files; i++) {
      const u = plan.float();
      const size = shape.minBytes + Math.floor((shape.maxBytes - shape.minBytes) * u * u);
      files.push({ rel: `${folders[plan.int(0, folders.length - 1)]}/file-${String(i).padStart(5, '0')}.bin`, size, seed: plan.next() });
    }
    mkdirSync(path.join(data, 'media'), { recursive: true });
    const big = Array.from({ length: shape.bigFiles }, (_, i) => ({ rel: `media/big-${i}.bin`, size: shape.bigBytes, seed: plan.next() }));
    for (const f of [...files, ...big]) writeRandomFile(path.join(data, f.rel), f.size, f.seed);
    bundles.push({ name, data, files, big });
  }
  const all = bundles.flatMap((b) => [...b.files, ...b.big]);
  return { dataRoot, bundles, files: all.length, bytes: all.reduce((n, f) => n + f.size, 0) };
}

/**
 * Rewrites 1% of each bundle's small files (chosen from `seed`) with new
 * contents of the same size and a fresh mtime, for the incremental backup.
 */
export function changeOnePercent(dataset, seed) {
  const rng = new Rng(seed);
  let files = 0;
  let bytes = 0;
  for (const b of dataset.bundles) {
    const want = Math.max(1, Math.round(b.files.length / 100));
    const picked = new Set();
    while (picked.size < want) picked.add(rng.int(0, b.files.length - 1));
    for (const i of picked) {
      const f = b.files[i];
      writeRandomFile(path.join(b.data, f.rel), f.size, rng.next());
      const now = new Date();
      utimesSync(path.join(b.data, f.rel), now, now);
      files++;
      bytes += f.size;
    }
  }
  return { files, bytes };
}

/**
 * Bundles of big sparse files for the hand-over rate: `com.bench.rate<r>` with
 * `counts[r]` files of `bytes` each (over the 2 MiB limit, so each is handed
 * over alone), made with ftruncate so they take no disk space.
 */
export function writeRateBundles(dataRoot, counts, bytes = Math.round(2.1 * MiB)) {
  const out = {};
  for (const [rate, n] of Object.entries(counts)) {
    const name = `com.bench.rate${rate}`;
    const data = writeBundleShell(dataRoot, name);
    for (let i = 0; i < n; i++) {
      const fd = openSync(path.join(data, `f-${String(i).padStart(5, '0')}.bin`), 'w', 0o644);
      try {
        ftruncateSync(fd, bytes);
      } finally {
        closeSync(fd);
      }
    }
    out[rate] = { name, files: n, bytes };
  }
  return out;
}

/** `n` bundles `com.bench.empty<nnn>` with an empty data/. */
export function writeEmptyBundles(dataRoot, n) {
  return Array.from({ length: n }, (_, i) => {
    const name = `com.bench.empty${String(i).padStart(3, '0')}`;
    writeBundleShell(dataRoot, name);
    return name;
  });
}

/**
 * `n` small bundles `com.bench.small<nn>` of `files` files of 1–4 KiB each
 * (the Temporal cost of a backup of many bundles, where orchestration dominates).
 */
export function writeSmallBundles(dataRoot, n, files, seed) {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const name = `com.bench.small${String(i).padStart(2, '0')}`;
    const data = writeBundleShell(dataRoot, name);
    for (let f = 0; f < files; f++) writeRandomFile(path.join(data, `file-${f}.bin`), rng.int(1024, 4096), rng.next());
    return name;
  });
}

/**
 * One bundle `name` of `files` tiny files (16–200 bytes, each unique), 1 000
 * per folder. Written with a few writes in flight at once (libuv's pool),
 * which on ext4 is several times faster than one at a time. Returns its size.
 */
export async function writeManyFilesBundle(dataRoot, name, files, seed, { concurrency = 16, onProgress } = {}) {
  const data = writeBundleShell(dataRoot, name);
  const perFolder = 1000;
  const folders = Math.ceil(files / perFolder);
  for (let d = 0; d < folders; d++) mkdirSync(path.join(data, `d${String(d).padStart(4, '0')}`));
  const rng = new Rng(seed);
  const pad = Buffer.alloc(200);
  let next = 0;
  let bytes = 0;
  const one = async () => {
    while (next < files) {
      const i = next++;
      const size = 16 + (rng.next() % 185);
      const head = Buffer.from(`${i}:${rng.next()}\n`);
      const body = Buffer.concat([head, pad.subarray(0, Math.max(0, size - head.length))]);
      bytes += body.length;
      await writeFile(path.join(data, `d${String(Math.floor(i / perFolder)).padStart(4, '0')}`, `f${String(i % perFolder).padStart(3, '0')}`), body);
      if (onProgress && i % 100_000 === 0) onProgress(i);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
  return { name, files, bytes };
}
