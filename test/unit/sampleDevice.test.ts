import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSampleDevice, type SampleDeviceSummary } from '../../engine/sampleDevice.js';
import { BackupConfigSchema, BundleJsonSchema, bundlePaths, PACK_LIMITS } from '../../common/device.js';

const BUNDLES = ['com.example.notes', 'com.example.gallery', 'com.example.mixed', 'com.example.locked', 'com.example.docs'];

interface Entry {
  rel: string;
  isDir: boolean;
  size: number;
  mode: number;
  mtimeMs: number;
}

/** Every entry below `root`, sorted, relative with '/' separators. */
async function walk(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const visit = async (rel: string) => {
    for (const d of await fs.readdir(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      const st = await fs.lstat(path.join(root, r));
      out.push({ rel: r, isDir: d.isDirectory(), size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs });
      if (d.isDirectory()) await visit(r);
    }
  };
  await visit('');
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/** Hash of the listing (paths, kinds, sizes, modes) and every file's bytes; mtimes of ordinary files are "now". */
async function fingerprint(root: string): Promise<string> {
  const h = createHash('sha256');
  for (const e of await walk(root)) {
    h.update(`${e.rel}\0${e.isDir}\0${e.size}\0${e.mode.toString(8)}\n`);
    if (!e.isDir) h.update(await fs.readFile(path.join(root, e.rel)));
  }
  return h.digest('hex');
}

describe('writeSampleDevice', () => {
  let tmp: string;
  let a: string;
  let summary: SampleDeviceSummary;

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'ohbackup-sample-'));
    a = path.join(tmp, 'a');
    summary = await writeSampleDevice(a, { scale: 0.02, seed: 7 });
  });
  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('lays every bundle out as api.md §7 says, with valid bundle.json and profile', async () => {
    expect(summary.dir).toBe(a);
    expect(summary.bundles.map((b) => b.name)).toEqual(BUNDLES);
    expect((await fs.readdir(a)).sort()).toEqual([...BUNDLES].sort());
    for (const name of BUNDLES) {
      const p = bundlePaths(a, name);
      for (const d of [p.data, p.backupTemp, p.restoreTemp]) expect((await fs.stat(d)).isDirectory()).toBe(true);
      expect(await fs.readdir(p.backupTemp)).toEqual([]);
      expect(await fs.readdir(p.restoreTemp)).toEqual([]);
      const bundle = BundleJsonSchema.parse(JSON.parse(await fs.readFile(p.bundleJson, 'utf8')));
      expect(bundle.name).toBe(name);
      expect(bundle.appIndex).toBe(0);
      const config = BackupConfigSchema.parse(JSON.parse(await fs.readFile(p.backupConfig, 'utf8')));
      expect(config.allowToBackupRestore).toBe(name !== 'com.example.locked');
      expect(summary.bundles.find((b) => b.name === name)!.backupable).toBe(name !== 'com.example.locked');
    }
  });

  it('summary counts match the files on disk, minus what the profile excludes', async () => {
    for (const b of summary.bundles) {
      const files = (await walk(bundlePaths(a, b.name).data)).filter((e) => !e.isDir);
      expect(files.length).toBe(b.files + b.excludedFiles);
      expect(files.reduce((n, e) => n + e.size, 0)).toBe(b.bytes + b.excludedBytes);
      expect(b.files).toBeGreaterThan(0);
    }
  });

  it('notes has nested small files and empty folders', async () => {
    const entries = await walk(bundlePaths(a, 'com.example.notes').data);
    const files = entries.filter((e) => !e.isDir);
    expect(files.length).toBeGreaterThanOrEqual(10);
    for (const f of files) {
      expect(f.size).toBeGreaterThanOrEqual(100);
      expect(f.size).toBeLessThanOrEqual(8192);
      expect([3, 4]).toContain(f.rel.split('/').length - 1);
    }
    const dirs = entries.filter((e) => e.isDir).map((e) => e.rel);
    const emptyDirs = dirs.filter((d) => !entries.some((e) => e.rel.startsWith(`${d}/`)));
    expect(emptyDirs.length).toBeGreaterThanOrEqual(2);
  });

  it('gallery and mixed hold files above the big-file limit, even at a small scale', async () => {
    for (const name of ['com.example.gallery', 'com.example.mixed']) {
      const files = (await walk(bundlePaths(a, name).data)).filter((e) => !e.isDir);
      expect(files.some((f) => f.size > PACK_LIMITS.bigFileBytes)).toBe(true);
    }
  });

  it('mixed excludes cache/ and *.tmp, and those files exist on disk', async () => {
    const p = bundlePaths(a, 'com.example.mixed');
    const config = BackupConfigSchema.parse(JSON.parse(await fs.readFile(p.backupConfig, 'utf8')));
    expect(config.excludes).toEqual(['cache', '**/*.tmp']);
    const files = (await walk(p.data)).filter((e) => !e.isDir).map((e) => e.rel);
    const excluded = files.filter((f) => f.startsWith('cache/') || f.endsWith('.tmp'));
    expect(files.some((f) => f.startsWith('cache/'))).toBe(true);
    expect(files.some((f) => f.endsWith('.tmp') && f.includes('/'))).toBe(true);
    expect(files.some((f) => f.endsWith('.tmp') && !f.includes('/'))).toBe(true);
    expect(excluded.length).toBe(summary.bundles.find((b) => b.name === 'com.example.mixed')!.excludedFiles);
    expect((await fs.readdir(path.join(p.data, 'empty'))).length).toBe(0);
  });

  it('docs has unusual names, fixed modes and past mtimes', async () => {
    const entries = await walk(bundlePaths(a, 'com.example.docs').data);
    const byRel = new Map(entries.map((e) => [e.rel, e]));
    expect(byRel.get('my notes.txt')?.mode).toBe(0o644);
    expect(byRel.get('résumé – final.pdf')?.mode).toBe(0o600);
    expect(byRel.get('bin/run.sh')?.mode).toBe(0o755);
    expect(byRel.has('日本語/ファイル名.txt')).toBe(true);
    expect(byRel.has('.hidden')).toBe(true);
    expect(byRel.has('.config/.settingsrc')).toBe(true);
    expect(byRel.get('empty-file')?.size).toBe(0);
    expect(entries.some((e) => Buffer.byteLength(e.rel) >= 200 && !e.rel.includes('/'))).toBe(true);
    expect(byRel.get('my notes.txt')?.mtimeMs).toBe(Date.parse('2001-09-09T01:46:40Z'));
    const yearAgo = Date.now() - 365 * 24 * 3600 * 1000;
    for (const e of entries.filter((x) => !x.isDir)) expect(e.mtimeMs).toBeLessThan(yearAgo);
  });

  it('is deterministic: the same seed gives the same bytes, another seed does not', async () => {
    const b = path.join(tmp, 'b');
    const c = path.join(tmp, 'c');
    const again = await writeSampleDevice(b, { scale: 0.02, seed: 7 });
    await writeSampleDevice(c, { scale: 0.02, seed: 8 });
    expect(again.bundles).toEqual(summary.bundles);
    const fa = await fingerprint(a);
    expect(await fingerprint(b)).toBe(fa);
    expect(await fingerprint(c)).not.toBe(fa);
    // Rewriting over an existing device replaces it rather than merging.
    await writeSampleDevice(c, { scale: 0.02, seed: 7 });
    expect(await fingerprint(c)).toBe(fa);
  });

  it('file contents are incompressible pseudo-random bytes', async () => {
    const { gzipSync } = await import('node:zlib');
    const files = (await walk(bundlePaths(a, 'com.example.gallery').data)).filter((e) => !e.isDir);
    const big = files.find((f) => f.size > PACK_LIMITS.bigFileBytes)!;
    const bytes = await fs.readFile(path.join(bundlePaths(a, 'com.example.gallery').data, big.rel));
    expect(gzipSync(bytes).length).toBeGreaterThan(bytes.length * 0.99);
  });
});
