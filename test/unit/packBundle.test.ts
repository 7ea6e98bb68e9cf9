import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packBundle, type PackOptions } from '../../engine/pack/index.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import type { IndexEntry } from '../../common/manageIndex.js';
import { extractTarEntries } from '../helpers/extractTar.js';

const MiB = 1024 * 1024;
let root: string;

async function sha256File(p: string): Promise<string> {
  return createHash('sha256')
    .update(await fsp.readFile(p))
    .digest('hex');
}

async function write(data: string, rel: string, content: Buffer | string, mode = 0o644): Promise<void> {
  const p = path.join(data, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, content);
  await fsp.chmod(p, mode);
}

async function freshDirs(name: string): Promise<{ data: string; out: string }> {
  const base = await fsp.mkdtemp(path.join(root, `${name}-`));
  const data = path.join(base, 'data');
  await fsp.mkdir(data);
  return { data, out: path.join(base, 'backup', 'backup') };
}

const longName = `${'ü'.repeat(60)}/${'n'.repeat(120)}.txt`; // non-ASCII and > 100 bytes: needs pax

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'packBundle-'));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('packBundle', () => {
  let data: string;
  let out: string;
  const smallFiles: string[] = [];

  beforeAll(async () => {
    ({ data, out } = await freshDirs('tree'));
    for (let i = 0; i < 30; i++) {
      const rel = `d${i % 3}/sub${i % 2}/f${String(i).padStart(2, '0')}.bin`;
      smallFiles.push(rel);
      await write(data, rel, randomBytes(1000 + i * 300), i % 2 ? 0o600 : 0o644);
    }
    await write(data, 'zero.bin', '');
    await write(data, 'script.sh', '#!/bin/sh\n', 0o755);
    await write(data, longName, 'long');
    await write(data, 'media/big.raw', randomBytes(3 * MiB));
    await fsp.mkdir(path.join(data, 'empty/nested-empty'), { recursive: true });
    await fsp.utimes(path.join(data, 'script.sh'), new Date('2020-01-02T03:04:05.678Z'), new Date('2020-01-02T03:04:05.678Z'));
    await fsp.symlink('/etc/passwd', path.join(data, 'd0/link'));
    execFileSync('mkfifo', [path.join(data, 'fifo')]);
  });

  const limits = { sliceEntries: 10, sliceBytes: 64 * 1024 };

  it('hands over slices and big files with a complete, consistent index', async () => {
    // Leftovers of an earlier attempt must not survive.
    await fsp.mkdir(out, { recursive: true });
    await fsp.writeFile(path.join(out, 'part.7.tar'), 'stale');

    const reports: Array<{ files: number; bytes: number }> = [];
    const summary = await packBundle({
      bundleName: 'com.example.app',
      dataDir: data,
      outDir: out,
      profile: { excludes: [] },
      limits,
      onProgress: (p) => reports.push({ files: p.files, bytes: p.bytes }),
    });

    const index = await readManageIndex(summary.indexPath);
    expect(summary.indexPath).toBe(path.join(out, 'manage.json'));
    expect(index.bundleName).toBe('com.example.app');
    expect(index.version).toBe(1);

    // Outputs: exactly the handed files, each with its resume sidecar, plus manage.json, all 0600, in a 0700 folder.
    const names = (await fsp.readdir(out)).sort();
    expect(names).toEqual([...index.files.flatMap((f) => [f.uri, `${f.uri}.done.json`]), 'manage.json'].sort());
    expect((await fsp.stat(out)).mode & 0o777).toBe(0o700);
    for (const n of names) expect((await fsp.stat(path.join(out, n))).mode & 0o777).toBe(0o600);

    // Slices are numbered in order and respect the limits; the 3 MiB file is alone.
    const tars = index.files.filter((f) => f.kind === 'tar');
    const bigs = index.files.filter((f) => f.kind === 'file');
    expect(tars.length).toBeGreaterThan(1);
    expect(tars.map((t) => t.uri)).toEqual(tars.map((_, i) => `part.${i}.tar`));
    expect(bigs.map((b) => b.uri)).toEqual(['file.0']);
    expect(bigs[0]!.entries).toMatchObject([{ path: 'media/big.raw', size: 3 * MiB, kind: 'file' }]);
    for (const t of tars) {
      expect(t.entries.length).toBeLessThanOrEqual(limits.sliceEntries);
      if (t.entries.length > 1) expect(t.size).toBeLessThanOrEqual(limits.sliceBytes);
    }

    // Every handed file's size and SHA-256 are those of the file as written.
    for (const f of index.files) {
      const p = path.join(out, f.uri);
      expect(f.size).toBe((await fsp.stat(p)).size);
      expect(f.sha256).toBe(await sha256File(p));
    }

    // Every slice extracts to exactly its index entries, with the source's bytes, mode and mtime.
    for (const t of tars) {
      const got = await extractTarEntries(path.join(out, t.uri));
      expect(got.map((g) => g.name)).toEqual(t.entries.map((e) => e.path));
      for (const [i, e] of t.entries.entries()) {
        const g = got[i]!;
        expect(g.type).toBe(e.kind === 'dir' ? 'directory' : 'file');
        expect(g.mode).toBe(e.mode);
        expect(g.size).toBe(e.size);
        expect(g.mtime.getTime()).toBe(Math.floor(e.mtimeMs / 1000) * 1000);
        if (e.kind === 'file') expect(g.sha256).toBe(e.sha256);
      }
    }

    // The index's entries are the source tree: every file's hash, mode and mtime, every folder.
    const all: IndexEntry[] = index.files.flatMap((f) => f.entries);
    const byPath = new Map(all.map((e) => [e.path, e]));
    expect(byPath.size).toBe(all.length); // each source entry once
    for (const e of all) {
      const src = path.join(data, e.path);
      const st = await fsp.lstat(src);
      expect(e.mode).toBe(st.mode & 0o7777);
      expect(e.mtimeMs).toBe(st.mtimeMs);
      if (e.kind === 'file') expect(e.sha256).toBe(await sha256File(src));
      else expect(e.sha256).toBe('');
    }
    for (const rel of [...smallFiles, 'zero.bin', 'script.sh', longName]) expect(byPath.get(rel)?.kind).toBe('file');
    for (const rel of ['d0', 'd0/sub0', 'empty', 'empty/nested-empty', 'media', longName.split('/')[0]!]) {
      expect(byPath.get(rel)?.kind).toBe('dir');
    }
    expect(byPath.get('script.sh')?.mode).toBe(0o755);
    expect(Math.round(byPath.get('script.sh')!.mtimeMs)).toBe(Date.parse('2020-01-02T03:04:05.678Z'));

    // Skipped and totals.
    expect(index.skipped).toEqual([
      { path: 'd0/link', reason: 'symlink' },
      { path: 'fifo', reason: 'fifo' },
    ]);
    const fileEntries = all.filter((e) => e.kind === 'file');
    const totals = {
      files: fileEntries.length,
      dirs: all.length - fileEntries.length,
      bytes: fileEntries.reduce((s, e) => s + e.size, 0),
    };
    expect(index.totals).toEqual(totals);
    expect(summary).toEqual({
      ...totals,
      handOver: index.files.length,
      // What the hand-over needs, without reading the index: its files in order.
      handed: index.files.map((f) => ({ uri: f.uri, size: f.size })),
      skipped: 2,
      indexPath: summary.indexPath,
    });

    // Progress ends with the totals.
    expect(reports.at(-1)).toEqual({ files: totals.files, bytes: totals.bytes });
  });

  it('is repeatable: a second run into the same folder starts clean and yields the same entries', async () => {
    const opts: PackOptions = { bundleName: 'b', dataDir: data, outDir: out, profile: { excludes: [] }, limits };
    const first = await readManageIndex((await packBundle(opts)).indexPath);
    const second = await readManageIndex((await packBundle(opts)).indexPath);
    expect(second.files).toEqual(first.files);
  });

  it('applies the profile and keeps everything in one slice with the default limits', async () => {
    const summary = await packBundle({
      bundleName: 'b',
      dataDir: data,
      outDir: out,
      profile: { includes: ['d1', 'empty'], excludes: ['**/sub1'] },
    });
    const index = await readManageIndex(summary.indexPath);
    expect(index.files.map((f) => f.uri)).toEqual(['part.0.tar']);
    expect(index.files[0]!.entries.map((e) => e.path)).toEqual([
      'd1',
      'd1/sub0',
      ...smallFiles.filter((p) => p.startsWith('d1/sub0/')).sort(),
      'empty',
      'empty/nested-empty',
    ]);
    expect(index.skipped).toEqual([]);
  });

  it('an empty includes list packs nothing but still writes an index', async () => {
    const summary = await packBundle({ bundleName: 'b', dataDir: data, outDir: out, profile: { includes: [], excludes: [] } });
    expect(summary).toMatchObject({ files: 0, dirs: 0, bytes: 0, handOver: 0, skipped: 0 });
    expect((await readManageIndex(summary.indexPath)).files).toEqual([]);
  });

  it('throws the signal reason when aborted between entries', async () => {
    const ac = new AbortController();
    const run = packBundle({
      bundleName: 'b',
      dataDir: data,
      outDir: out,
      profile: { excludes: [] },
      limits,
      signal: ac.signal,
      onProgress: () => ac.abort(),
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    await expect(fsp.access(path.join(out, 'manage.json'))).rejects.toThrow();
  });
});
