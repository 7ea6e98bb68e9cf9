/**
 * Files that change, or vanish, while they are packed. The packer's first
 * progress report comes with the first chunk of data it reads, so a change
 * made in `onProgress` lands deterministically while that file is being read.
 * Whatever happens to the file, the pack succeeds, the file is reported in the
 * index's `skipped` list, and the index describes exactly the bytes stored:
 * the set verifies and restores.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, openSync, closeSync, writeSync, truncateSync, unlinkSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRestore } from '../../engine/unpack/index.js';
import { readManifest } from '../../engine/formats/manifest.js';
import { packBundle, type PackOptions } from '../../engine/pack/index.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { walkBundle } from '../../engine/walk.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import { extractTarEntries } from '../helpers/extractTar.js';
import { sha256File } from '../helpers/verifySet.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const PAST = new Date('2021-05-06T07:08:09.000Z');
let root: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'packChanging-'));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** A bundle folder with `files` (written with an old mtime, so any later write moves it). */
async function bundle(name: string, files: Record<string, Buffer | string>) {
  const base = await fsp.mkdtemp(path.join(root, `${name}-`));
  const data = path.join(base, 'data');
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(data, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, content);
    await fsp.utimes(p, PAST, PAST);
  }
  return { base, data, out: path.join(base, 'out') };
}

/** Packs, calling `change` once: with the first chunk read (of the first file packed). */
async function packChanging(b: { data: string; out: string }, change: () => void, extra: Partial<PackOptions> = {}) {
  let changed = false;
  const summary = await packBundle({
    bundleName: 'com.t.changing',
    dataDir: b.data,
    outDir: b.out,
    profile: { excludes: [] },
    limits: { bigFileBytes: MiB },
    onProgress: () => {
      if (!changed) change();
      changed = true;
    },
    ...extra,
  });
  expect(changed).toBe(true);
  return { summary, index: await readManageIndex(summary.indexPath) };
}

/** Every output matches its record, every tar entry its index entry; then a real restore of it succeeds. */
async function expectConsistent(b: { base: string; out: string }, index: ManageIndex) {
  for (const f of index.files) {
    const p = path.join(b.out, f.uri);
    expect((await fsp.stat(p)).size, f.uri).toBe(f.size);
    expect(await sha256File(p), f.uri).toBe(f.sha256);
    if (f.kind === 'file') {
      expect(f.entries[0]!.size).toBe(f.size);
      expect(f.entries[0]!.sha256).toBe(f.sha256);
      continue;
    }
    const seen = await extractTarEntries(p);
    expect(seen.map((e) => [e.name.replace(/\/$/, ''), e.size, e.type === 'file' ? e.sha256 : ''])).toEqual(f.entries.map((e) => [e.path, e.size, e.sha256]));
  }
  const restored = path.join(b.base, 'restored', 'data');
  await fsp.mkdir(path.dirname(restored), { recursive: true });
  const r = await applyRestore({ bundleName: 'com.t.changing', restoreDir: b.out, dataDir: restored, stagingDir: path.join(b.base, 'staging'), mode: 'apply' });
  expect(r.files).toBe(index.totals.files);
  return restored;
}

const entryOf = (index: ManageIndex, p: string) => index.files.flatMap((f) => f.entries).find((e) => e.path === p)!;

describe('a file in a tar slice changing while it is read', () => {
  it('shrank: the entry is zero-padded to the length its header holds, reported, and the set restores', async () => {
    const original = randomBytes(512 * KiB);
    const b = await bundle('shrink', { 'f.bin': original, 'g.txt': 'steady' });
    const { index } = await packChanging(b, () => truncateSync(path.join(b.data, 'f.bin'), 1000));
    expect(index.skipped).toEqual([{ path: 'f.bin', reason: expect.stringMatching(/^changed while read: shrank to \d+ bytes, zero-padded to 524288$/) }]);
    expect(entryOf(index, 'f.bin').size).toBe(512 * KiB);
    const restored = await expectConsistent(b, index);
    // What was read before the cut is the original's; the rest is padding.
    const back = await fsp.readFile(path.join(restored, 'f.bin'));
    const kept = Number(/shrank to (\d+)/.exec(index.skipped[0]!.reason)![1]);
    expect(back.subarray(0, kept).equals(original.subarray(0, kept))).toBe(true);
    expect(back.subarray(kept).every((x) => x === 0)).toBe(true);
    expect(await fsp.readFile(path.join(restored, 'g.txt'), 'utf8')).toBe('steady');
  });

  it('grew: the entry holds the length its header holds, reported, and the set restores', async () => {
    const original = randomBytes(512 * KiB);
    const b = await bundle('grow', { 'f.bin': original });
    const { index, summary } = await packChanging(b, () => appendFileSync(path.join(b.data, 'f.bin'), randomBytes(100 * KiB)));
    expect(index.skipped).toEqual([{ path: 'f.bin', reason: 'changed while read: grew past 524288 bytes, the first 524288 stored' }]);
    expect(entryOf(index, 'f.bin').size).toBe(512 * KiB);
    expect(summary.bytes).toBe(512 * KiB);
    const restored = await expectConsistent(b, index);
    expect((await fsp.readFile(path.join(restored, 'f.bin'))).equals(original)).toBe(true);
  });

  it('rewritten in place (same length): the bytes read are recorded as stored, and it is reported', async () => {
    const b = await bundle('rewrite', { 'f.bin': randomBytes(512 * KiB) });
    const { index } = await packChanging(b, () => {
      const fd = openSync(path.join(b.data, 'f.bin'), 'r+');
      writeSync(fd, randomBytes(64 * KiB), 0, 64 * KiB, 300 * KiB);
      closeSync(fd);
    });
    expect(index.skipped).toEqual([{ path: 'f.bin', reason: 'changed while read: rewritten' }]);
    await expectConsistent(b, index);
  });

  it('deleted while read: the open file is read to its end, stored whole, and reported', async () => {
    const original = randomBytes(512 * KiB);
    const b = await bundle('unlinked', { 'f.bin': original });
    const { index } = await packChanging(b, () => unlinkSync(path.join(b.data, 'f.bin')));
    expect(index.skipped).toEqual([{ path: 'f.bin', reason: 'deleted while read (the bytes read stored)' }]);
    const restored = await expectConsistent(b, index);
    expect((await fsp.readFile(path.join(restored, 'f.bin'))).equals(original)).toBe(true);
  });

  it('the new manifest of an incremental chain records the stored bytes, so the next backup takes the file again', async () => {
    const b = await bundle('manifest', { 'f.bin': randomBytes(512 * KiB) });
    const manifestPath = path.join(b.base, 'manifest.jsonl');
    const { index } = await packChanging(b, () => truncateSync(path.join(b.data, 'f.bin'), 10), { manifestPath });
    const entry = (await readManifest(manifestPath)).entries.get('f.bin')!;
    expect(entry).toMatchObject({ size: 512 * KiB, sha256: entryOf(index, 'f.bin').sha256, mtimeMs: PAST.getTime() });
    // The file now differs from its manifest entry (size and mtime): an increment on this base packs it.
    const now = await fsp.stat(path.join(b.data, 'f.bin'));
    expect(now.size === entry.size && now.mtimeMs === entry.mtimeMs).toBe(false);
  });
});

describe('a big file changing while it is copied', () => {
  it('grew: the copy holds the length it had when opened, reported', async () => {
    const original = randomBytes(3 * MiB);
    const b = await bundle('biggrow', { 'big.bin': original });
    const { index, summary } = await packChanging(b, () => appendFileSync(path.join(b.data, 'big.bin'), randomBytes(KiB)));
    expect(index.skipped).toEqual([{ path: 'big.bin', reason: `changed while read: ${3 * MiB} bytes when opened, ${3 * MiB + KiB} now` }]);
    expect(index.files[0]).toMatchObject({ kind: 'file', size: 3 * MiB });
    expect(summary.bytes).toBe(3 * MiB);
    const restored = await expectConsistent(b, index);
    expect((await fsp.readFile(path.join(restored, 'big.bin'))).equals(original)).toBe(true);
  });

  it('shrank: the copy holds what was left, reported', async () => {
    const b = await bundle('bigshrink', { 'big.bin': randomBytes(3 * MiB) });
    const { index } = await packChanging(b, () => truncateSync(path.join(b.data, 'big.bin'), 2 * MiB));
    expect(index.skipped).toEqual([{ path: 'big.bin', reason: expect.stringMatching(/^changed while read: shrank to \d+ bytes, those stored$/) }]);
    const stored = Number(/shrank to (\d+)/.exec(index.skipped[0]!.reason)![1]);
    expect(index.files[0]).toMatchObject({ kind: 'file', size: stored });
    await expectConsistent(b, index);
  });
});

describe('files vanishing before they are read', () => {
  it('a file deleted after its folder was listed is reported as vanished, not packed', async () => {
    // a.bin is packed first; while it is read, z.bin (listed with a.bin, not yet looked at) is deleted.
    const b = await bundle('vanish', { 'a.bin': randomBytes(256 * KiB), 'z.bin': 'gone soon' });
    const { index } = await packChanging(b, () => unlinkSync(path.join(b.data, 'z.bin')));
    expect(index.skipped).toEqual([{ path: 'z.bin', reason: 'vanished' }]);
    expect(index.files.flatMap((f) => f.entries.map((e) => e.path))).toEqual(['a.bin']);
    await expectConsistent(b, index);
  });

  it('files that do not change are not reported', async () => {
    const b = await bundle('steady', { 'a.bin': randomBytes(256 * KiB), 'big.bin': randomBytes(2 * MiB), 'd/c.txt': 'c' });
    const { index } = await packChanging(b, () => undefined);
    expect(index.skipped).toEqual([]);
    const walked: string[] = [];
    for await (const item of walkBundle(b.data, { excludes: [] })) walked.push(item.path);
    expect(index.files.flatMap((f) => f.entries.map((e) => e.path)).sort()).toEqual(walked.sort());
    await expectConsistent(b, index);
  });
});
