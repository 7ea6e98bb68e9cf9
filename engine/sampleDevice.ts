/**
 * Writes a deterministic sample device in the layout of api.md §7, for demos,
 * benchmarks and tests. Every bundle exercises a different part of packing
 * (§9): many small files, big files handed over alone, excludes, a bundle that
 * refuses backup, and awkward names/modes/mtimes.
 *
 * Determinism: a plan (paths, sizes, per-file seeds) is drawn from one seeded
 * PRNG up front, so writing files concurrently cannot change the result.
 * Contents are PRNG bytes (incompressible, so sizes mean something), produced
 * in chunks so a big file never sits in memory whole.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { z } from 'zod';
import { BackupConfigSchema, BundleJsonSchema, bundlePaths, PACK_LIMITS } from '../common/device.js';

export interface SampleBundleSummary {
  name: string;
  /** Regular files a backup of this bundle should carry (its profile's excludes applied). */
  files: number;
  bytes: number;
  /** The profile's allowToBackupRestore. */
  backupable: boolean;
  /** Files present under data/ that the profile excludes. */
  excludedFiles: number;
  excludedBytes: number;
}

export interface SampleDeviceSummary {
  dir: string;
  bundles: SampleBundleSummary[];
}

export interface SampleDeviceOptions {
  /** Multiplies file counts (1 = defaults); big files stay above the 2 MiB hand-over limit. */
  scale?: number;
  seed?: number;
}

interface PlannedFile {
  /** Relative to data/. */
  rel: string;
  size: number;
  seed: number;
  mode?: number;
  mtime?: Date;
  excluded?: boolean;
}

interface BundlePlan {
  bundle: z.input<typeof BundleJsonSchema>;
  config: z.input<typeof BackupConfigSchema>;
  files: PlannedFile[];
  emptyDirs: string[];
}

type Rng = () => number;

/** mulberry32: tiny, fast, and good enough for test data; returns a uint32. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;
const WRITE_CONCURRENCY = 16;
const BIG_MIN = PACK_LIMITS.bigFileBytes + MiB / 2;

class Plan {
  readonly #rng: Rng;
  constructor(seed: number) {
    this.#rng = mulberry32(seed);
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + (this.#rng() % (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }
  file(rel: string, min: number, max: number, extra: Partial<PlannedFile> = {}): PlannedFile {
    return { rel, size: this.int(min, max), seed: this.#rng(), ...extra };
  }
}

function* randomChunks(seed: number, size: number): Generator<Buffer> {
  const rng = mulberry32(seed);
  for (let left = size; left > 0; left -= CHUNK) {
    const n = Math.min(CHUNK, left);
    const words = new Uint32Array(Math.ceil(n / 4));
    for (let i = 0; i < words.length; i++) words[i] = rng();
    yield Buffer.from(words.buffer, 0, n);
  }
}

const count = (base: number, scale: number, min: number) => Math.max(min, Math.round(base * scale));

function planNotes(p: Plan, scale: number): BundlePlan {
  const top = ['notebooks', 'archive', 'shared'];
  const mid = ['2021', '2022', '2023', 'work', 'personal'];
  const low = ['ideas', 'todo', 'meetings', 'travel', 'recipes', 'journal'];
  const leaf = ['a', 'b', 'c', 'drafts'];
  // Leaf folders at depth 3 or 4 below data/, deduplicated in draw order.
  const folders = new Set<string>();
  const wantFolders = count(40, scale, 2);
  for (let tries = 0; folders.size < wantFolders && tries < wantFolders * 20; tries++) {
    const parts = [p.pick(top), p.pick(mid), p.pick(low)];
    if (p.int(0, 1) === 1) parts.push(p.pick(leaf));
    folders.add(parts.join('/'));
  }
  const dirs = [...folders];
  const files = Array.from({ length: count(2000, scale, 10) }, (_, i) => p.file(`${p.pick(dirs)}/note-${String(i).padStart(5, '0')}.txt`, 100, 8 * KiB));
  return {
    bundle: { name: 'com.example.notes', versionCode: 1_000_012, versionName: '1.0.12', appIndex: 0 },
    config: { allowToBackupRestore: true },
    files,
    emptyDirs: ['trash', 'archive/empty/deeper'],
  };
}

function planGallery(p: Plan, scale: number): BundlePlan {
  const big = Array.from({ length: count(3, scale, 1) }, (_, i) =>
    // Always above the hand-over limit, whatever the scale: that is what this bundle is for.
    p.file(`DCIM/Camera/IMG_${20240101 + i}.jpg`, BIG_MIN, 6 * MiB),
  );
  const thumbs = Array.from({ length: count(30, scale, 2) }, (_, i) => p.file(`thumbnails/thumb_${i}.jpg`, KiB, 64 * KiB));
  return {
    bundle: { name: 'com.example.gallery', versionCode: 204, versionName: '2.0.4', appIndex: 0 },
    config: { allowToBackupRestore: true, supportScene: 'cloud', extraInfo: { albums: 2 } },
    files: [...big, ...thumbs],
    emptyDirs: [],
  };
}

function planMixed(p: Plan, scale: number): BundlePlan {
  const files: PlannedFile[] = [];
  for (let i = 0; i < count(60, scale, 3); i++) {
    files.push(p.file(`${p.pick(['docs', 'settings', 'db/journal'])}/item-${i}.dat`, 10, 32 * KiB));
  }
  files.push(p.file('media/clip.mp4', BIG_MIN, 4 * MiB));
  // Must exist on disk yet never reach a backup: "cache" names a folder, "**/*.tmp" any depth.
  for (let i = 0; i < count(20, scale, 2); i++) {
    files.push(p.file(`cache/${i % 2 ? 'img/' : ''}c-${i}.bin`, 100, 16 * KiB, { excluded: true }));
  }
  for (const rel of ['scratch.tmp', 'docs/edit.tmp', 'db/journal/wal.tmp']) {
    files.push(p.file(rel, 0, 4 * KiB, { excluded: true }));
  }
  return {
    bundle: { name: 'com.example.mixed', versionCode: 37, versionName: '0.3.7', appIndex: 0 },
    config: { allowToBackupRestore: true, excludes: ['cache', '**/*.tmp'] },
    files,
    emptyDirs: ['empty', 'media/albums/none'],
  };
}

function planLocked(p: Plan, scale: number): BundlePlan {
  const files = Array.from({ length: count(10, scale, 2) }, (_, i) => p.file(`secrets/key-${i}.bin`, 32, 2 * KiB));
  return {
    bundle: { name: 'com.example.locked', versionCode: 1, versionName: '1.0', appIndex: 0 },
    config: { allowToBackupRestore: false },
    files,
    emptyDirs: [],
  };
}

function planDocs(p: Plan): BundlePlan {
  const d = (iso: string) => new Date(iso);
  const long = `${'long-name-'.repeat(19)}the-end.md`; // 200 ASCII bytes, under NAME_MAX 255
  const files: PlannedFile[] = [
    p.file('my notes.txt', 100, 4 * KiB, { mode: 0o644, mtime: d('2001-09-09T01:46:40Z') }),
    p.file('résumé – final.pdf', 1 * KiB, 40 * KiB, { mode: 0o600, mtime: d('2015-06-15T12:00:00Z') }),
    p.file('日本語/ファイル名.txt', 100, 4 * KiB, { mode: 0o644, mtime: d('2019-03-01T08:30:00Z') }),
    p.file('emoji 🎉 party.md', 100, 2 * KiB, { mode: 0o644, mtime: d('2020-02-29T23:59:59Z') }),
    p.file(long, 100, 2 * KiB, { mode: 0o644, mtime: d('2010-01-01T00:00:00Z') }),
    p.file('.hidden', 10, 200, { mode: 0o600, mtime: d('2012-12-12T12:12:12Z') }),
    p.file('.config/.settingsrc', 10, 500, { mode: 0o600, mtime: d('2018-07-04T00:00:00Z') }),
    p.file('bin/run.sh', 50, 500, { mode: 0o755, mtime: d('2016-11-11T11:11:11Z') }),
    p.file("it's [really] #odd; 100% & (so) =.txt", 100, 1 * KiB, { mode: 0o644, mtime: d('2014-05-05T05:05:05Z') }),
    p.file('  leading and trailing spaces  ', 10, 100, { mode: 0o644, mtime: d('2013-01-01T00:00:00Z') }),
    p.file('empty-file', 0, 0, { mode: 0o644, mtime: d('2011-04-01T00:00:00Z') }),
  ];
  return {
    bundle: { name: 'com.example.docs', versionCode: 5, versionName: '5.0.0-beta+exp.sha.5114f85', appIndex: 0 },
    config: { allowToBackupRestore: true, includes: ['**'] },
    files,
    emptyDirs: ['Folder With Spaces'],
  };
}

async function writeFile(dataDir: string, f: PlannedFile): Promise<void> {
  const file = path.join(dataDir, f.rel);
  await fs.mkdir(path.dirname(file), { recursive: true });
  if (f.size <= CHUNK) {
    await fs.writeFile(file, randomChunks(f.seed, f.size).next().value ?? Buffer.alloc(0));
  } else {
    const out = createWriteStream(file);
    for (const chunk of randomChunks(f.seed, f.size)) {
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
  }
  // chmod after writing so the result does not depend on the process umask.
  if (f.mode !== undefined) await fs.chmod(file, f.mode);
  if (f.mtime) await fs.utimes(file, f.mtime, f.mtime);
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function writeBundle(dir: string, plan: BundlePlan): Promise<SampleBundleSummary> {
  const paths = bundlePaths(dir, plan.bundle.name);
  // Start clean: leftovers from another seed or scale would break determinism.
  await fs.rm(paths.root, { recursive: true, force: true });
  for (const d of [paths.data, paths.backupTemp, paths.restoreTemp]) await fs.mkdir(d, { recursive: true });
  // Parse to fail fast if a plan ever drifts from the schemas; write the plan as authored.
  BundleJsonSchema.parse(plan.bundle);
  const config = BackupConfigSchema.parse(plan.config);
  await fs.writeFile(paths.bundleJson, JSON.stringify(plan.bundle, null, 2) + '\n');
  await fs.writeFile(paths.backupConfig, JSON.stringify(plan.config, null, 2) + '\n');
  for (const d of plan.emptyDirs) await fs.mkdir(path.join(paths.data, d), { recursive: true });
  await pool(plan.files, WRITE_CONCURRENCY, (f) => writeFile(paths.data, f));

  const kept = plan.files.filter((f) => !f.excluded);
  const dropped = plan.files.filter((f) => f.excluded);
  const sum = (list: PlannedFile[]) => list.reduce((n, f) => n + f.size, 0);
  return {
    name: plan.bundle.name,
    files: kept.length,
    bytes: sum(kept),
    backupable: config.allowToBackupRestore,
    excludedFiles: dropped.length,
    excludedBytes: sum(dropped),
  };
}

export async function writeSampleDevice(dir: string, opts: SampleDeviceOptions = {}): Promise<SampleDeviceSummary> {
  const scale = opts.scale ?? 1;
  if (!(scale > 0)) throw new RangeError(`scale must be > 0, got ${scale}`);
  const p = new Plan(opts.seed ?? 1);
  // Drawn in a fixed order, before any I/O, so the device depends on the seed alone.
  const plans = [planNotes(p, scale), planGallery(p, scale), planMixed(p, scale), planLocked(p, scale), planDocs(p)];
  await fs.mkdir(dir, { recursive: true });
  const bundles: SampleBundleSummary[] = [];
  for (const plan of plans) bundles.push(await writeBundle(dir, plan));
  return { dir, bundles };
}
