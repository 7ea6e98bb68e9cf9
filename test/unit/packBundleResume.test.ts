/**
 * packBundle's resume after an interrupted attempt (a worker killed with
 * SIGKILL): the completed outputs are kept, the rest is packed again, and the
 * index is the one an uninterrupted run writes. Real files, no Temporal.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packBundle, type PackOptions, type PackProgress } from '../../engine/pack/index.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import { extractTarEntries } from '../helpers/extractTar.js';

const KiB = 1024;
let root: string;

/** Many slices and several big files, some in a row, with skipped items and lazy folders between them. */
const limits = { sliceEntries: 4, sliceBytes: 8 * KiB, bigFileBytes: 32 * KiB };

async function write(data: string, rel: string, content: Buffer | string): Promise<void> {
  const p = path.join(data, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, content);
}

async function makeTree(name: string): Promise<{ data: string; base: string }> {
  const base = await fsp.mkdtemp(path.join(root, `${name}-`));
  const data = path.join(base, 'data');
  for (let i = 0; i < 8; i++) await write(data, `a/s${String(i).padStart(2, '0')}.bin`, randomBytes(300 + i * 150));
  await write(data, 'a/big1.bin', randomBytes(40 * KiB));
  await write(data, 'a/sub/x.bin', randomBytes(700));
  // Plain string order would put these before a/…; the walk puts them after.
  await write(data, 'a-b/y.bin', randomBytes(200));
  await write(data, 'a.txt', 'after a/ in walk order');
  await write(data, 'b/big2.bin', randomBytes(50 * KiB));
  await write(data, 'b/big3.bin', randomBytes(33 * KiB));
  for (let i = 0; i < 6; i++) await write(data, `b/t${i}.txt`, randomBytes(2000));
  await fsp.symlink('/etc/passwd', path.join(data, 'b/link.bin'));
  execFileSync('mkfifo', [path.join(data, 'b/pipe.bin')]);
  await fsp.mkdir(path.join(data, 'e/f/g'), { recursive: true });
  // Only reached through includes: a skipped item before its folder is (lazily) listed.
  await fsp.mkdir(path.join(data, 'lazy'));
  await fsp.symlink('/etc/hosts', path.join(data, 'lazy/a.bin'));
  await write(data, 'lazy/b.bin', randomBytes(900));
  await write(data, 'lazy/c.txt', 'not included by **/*.bin');
  await write(data, `${'ü'.repeat(40)}/${'n'.repeat(110)}.bin`, randomBytes(1500));
  await write(data, 'z/big4.bin', randomBytes(64 * KiB));
  await write(data, 'z/last.bin', randomBytes(100));
  return { data, base };
}

function withoutCreatedAt(index: ManageIndex): Omit<ManageIndex, 'createdAt'> {
  const { createdAt: _, ...rest } = index;
  return rest;
}

async function sha256File(p: string): Promise<string> {
  return createHash('sha256')
    .update(await fsp.readFile(p))
    .digest('hex');
}

/** Outputs that have a sidecar, with what identifies the file on disk (rewriting it changes both). */
async function completedOutputs(out: string): Promise<Map<string, { ino: bigint; mtimeNs: bigint }>> {
  const result = new Map<string, { ino: bigint; mtimeNs: bigint }>();
  for (const name of await fsp.readdir(out)) {
    if (!name.endsWith('.done.json')) continue;
    const uri = name.slice(0, -'.done.json'.length);
    const st = await fsp.stat(path.join(out, uri), { bigint: true });
    result.set(uri, { ino: st.ino, mtimeNs: st.mtimeNs });
  }
  return result;
}

class Killed extends Error {}

/**
 * Runs a pack that dies right after its `k`-th output became durable (or when
 * `k` says so), as a SIGKILL there would: nothing after that point happens
 * (the open slice stays half-written).
 */
async function killAfter(opts: PackOptions, k: number | (() => boolean)): Promise<void> {
  let killed = false;
  const run = packBundle({
    ...opts,
    onProgress: (p) => {
      if (!killed && p.phase === 'pack' && (typeof k === 'number' ? p.durable >= k : k())) {
        killed = true;
        throw new Killed(`killed after ${p.durable} outputs`);
      }
    },
  });
  await expect(run).rejects.toBeInstanceOf(Killed);
}

/** The smallest slice / big-file number without a sidecar. */
async function firstIncomplete(out: string, kind: 'part' | 'file'): Promise<string> {
  const names = new Set(await fsp.readdir(out));
  for (let n = 0; ; n++) {
    const uri = kind === 'part' ? `part.${n}.tar` : `file.${n}`;
    if (!names.has(`${uri}.done.json`)) return uri;
  }
}

/** The index describes exactly what is in the files, and the source where the file was not re-used. */
async function expectConsistent(out: string, index: ManageIndex): Promise<void> {
  const seen = new Set<string>();
  for (const f of index.files) {
    const p = path.join(out, f.uri);
    expect(f.size).toBe((await fsp.stat(p)).size);
    expect(f.sha256).toBe(await sha256File(p));
    if (f.kind === 'tar') {
      const got = await extractTarEntries(p);
      expect(got.map((g) => g.name)).toEqual(f.entries.map((e) => e.path));
      for (const [i, e] of f.entries.entries()) {
        expect(got[i]!.size).toBe(e.size);
        if (e.kind === 'file') expect(got[i]!.sha256).toBe(e.sha256);
      }
    } else {
      expect(f.entries).toHaveLength(1);
      expect(f.entries[0]!.sha256).toBe(f.sha256);
      expect(f.entries[0]!.size).toBe(f.size);
    }
    for (const e of f.entries) {
      expect(seen.has(e.path)).toBe(false);
      seen.add(e.path);
    }
  }
  const all = index.files.flatMap((f) => f.entries);
  const fileEntries = all.filter((e) => e.kind === 'file');
  expect(index.totals).toEqual({
    files: fileEntries.length,
    dirs: all.length - fileEntries.length,
    bytes: fileEntries.reduce((s, e) => s + e.size, 0),
  });
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'packResume-'));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe.each([
  { name: 'everything', profile: { excludes: [] }, limits },
  { name: 'includes', profile: { includes: ['**/*.bin', 'e'], excludes: ['a/sub'] }, limits },
  // Every entry closes the slice before it, so skipped items fall between a slice's last entry and its close,
  // and lazy/a.bin is skipped before its folder is listed.
  { name: 'one entry per slice', profile: { includes: ['**/*.bin', 'e'], excludes: [] }, limits: { ...limits, sliceEntries: 1 } },
])('packBundle resume ($name)', ({ profile, limits }) => {
  let data: string;
  let base: string;
  let reference: ManageIndex;
  const opts = (out: string, more: Partial<PackOptions> = {}): PackOptions => ({
    bundleName: 'com.example.resume',
    dataDir: data,
    outDir: out,
    profile,
    limits,
    ...more,
  });

  beforeAll(async () => {
    ({ data, base } = await makeTree('tree'));
    const out = path.join(base, 'reference');
    reference = await readManageIndex((await packBundle(opts(out))).indexPath);
    await expectConsistent(out, reference);
    // The fixture is what the test means it to be: many slices, big files between and in a row, skipped items.
    expect(reference.files.filter((f) => f.kind === 'tar').length).toBeGreaterThan(4);
    expect(reference.files.filter((f) => f.kind === 'file').length).toBeGreaterThanOrEqual(3);
    expect(reference.skipped.length).toBeGreaterThanOrEqual(2);
  });

  it('after a kill at every durable point, resumes without redoing completed outputs and writes the same index', async () => {
    const n = reference.files.length;
    for (let k = 1; k < n; k++) {
      const out = path.join(base, `kill-${k}`);
      await killAfter(opts(out), k);
      const before = await completedOutputs(out);
      expect(before.size).toBe(k);

      // Leftovers of the killed attempt: a half-written slice and big file, a sidecar's temporary file, a stale index.
      const garbageSlice = await firstIncomplete(out, 'part');
      const garbageBig = await firstIncomplete(out, 'file');
      await fsp.writeFile(path.join(out, garbageSlice), 'garbage, not a tar');
      await fsp.writeFile(path.join(out, garbageBig), 'half a big file');
      await fsp.writeFile(path.join(out, `${garbageSlice}.done.json.tmp`), '{"trunc');
      await fsp.writeFile(path.join(out, 'manage.json'), '{}');

      const reports: PackProgress[] = [];
      const summary = await packBundle(opts(out, { resume: true, onProgress: (p) => reports.push(p) }));
      const index = await readManageIndex(summary.indexPath);

      expect(withoutCreatedAt(index), `killed after ${k}`).toEqual(withoutCreatedAt(reference));
      await expectConsistent(out, index);
      // Nothing completed before the kill was written again.
      const after = await completedOutputs(out);
      for (const [uri, id] of before) expect(after.get(uri), `${uri} (killed after ${k})`).toEqual(id);
      expect(summary.resumed).toMatchObject({ kept: expect.any(Number), reused: expect.any(Number) });
      const resumed = summary.resumed as { kept: number; reused: number };
      expect(resumed.kept + resumed.reused).toBe(k);
      // The leftovers are gone: what is there is the outputs, their sidecars and the index.
      expect((await fsp.readdir(out)).sort()).toEqual([...index.files.flatMap((f) => [f.uri, `${f.uri}.done.json`]), 'manage.json'].sort());
      expect(index.files.map((f) => f.uri)).toContain(garbageSlice);
      // Progress picks up from the kept outputs and ends with the totals.
      expect(reports.at(-1)).toEqual({ files: index.totals.files, bytes: index.totals.bytes, phase: 'pack', durable: n });
      await fsp.rm(out, { recursive: true });
    }
  });

  it('survives being killed again while resuming', async () => {
    const n = reference.files.length;
    for (let k = 1; k + 2 < n; k += Math.max(2, Math.floor(n / 8))) {
      const out = path.join(base, `twice-${k}`);
      await killAfter(opts(out), k);
      await killAfter(opts(out, { resume: true }), k + 2);
      const before = await completedOutputs(out);
      expect(before.size).toBe(k + 2);
      const summary = await packBundle(opts(out, { resume: true }));
      const index = await readManageIndex(summary.indexPath);
      expect(withoutCreatedAt(index), `killed after ${k} and ${k + 2}`).toEqual(withoutCreatedAt(reference));
      const after = await completedOutputs(out);
      for (const [uri, id] of before) expect(after.get(uri)).toEqual(id);
      await fsp.rm(out, { recursive: true });
    }
  });

  it('stops on the abort signal in a resumable state', async () => {
    const out = path.join(base, 'abort');
    const ac = new AbortController();
    const run = packBundle(opts(out, { signal: ac.signal, onProgress: (p) => p.durable >= 3 && ac.abort() }));
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    const before = await completedOutputs(out);
    expect(before.size).toBeGreaterThanOrEqual(3);
    const summary = await packBundle(opts(out, { resume: true }));
    expect(withoutCreatedAt(await readManageIndex(summary.indexPath))).toEqual(withoutCreatedAt(reference));
    const after = await completedOutputs(out);
    for (const [uri, id] of before) expect(after.get(uri)).toEqual(id);
  });
});

describe('packBundle resume edge cases', () => {
  let data: string;
  let base: string;
  let reference: ManageIndex;
  let counter = 0;
  const opts = (out: string, more: Partial<PackOptions> = {}): PackOptions => ({
    bundleName: 'com.example.resume',
    dataDir: data,
    outDir: out,
    profile: { excludes: [] },
    limits,
    ...more,
  });
  const newOut = () => path.join(base, `out-${counter++}`);

  beforeAll(async () => {
    ({ data, base } = await makeTree('edge'));
    reference = await readManageIndex((await packBundle(opts(path.join(base, 'reference')))).indexPath);
  });

  it('a fresh (non-resume) run empties the folder and packs everything again', async () => {
    const out = newOut();
    await killAfter(opts(out), 5);
    const before = await completedOutputs(out);
    await fsp.writeFile(path.join(out, 'stray.txt'), 'x');
    const summary = await packBundle(opts(out));
    expect(summary.resumed).toBeUndefined();
    const index = await readManageIndex(summary.indexPath);
    expect(withoutCreatedAt(index)).toEqual(withoutCreatedAt(reference));
    const after = await completedOutputs(out);
    for (const [uri, id] of before) expect(after.get(uri)?.mtimeNs).not.toBe(id.mtimeNs);
    expect(await fsp.readdir(out)).not.toContain('stray.txt');
  });

  it('resuming a finished run keeps every output and rewrites the same index', async () => {
    const out = newOut();
    await packBundle(opts(out));
    const before = await completedOutputs(out);
    const summary = await packBundle(opts(out, { resume: true }));
    expect(summary.resumed).toEqual({ kept: reference.files.length - countPendingAtEnd(reference), reused: countPendingAtEnd(reference) });
    expect(withoutCreatedAt(await readManageIndex(summary.indexPath))).toEqual(withoutCreatedAt(reference));
    expect(await completedOutputs(out)).toEqual(before);
  });

  it('resuming into a missing or empty folder is a fresh run', async () => {
    const out = newOut();
    const summary = await packBundle(opts(out, { resume: true }));
    expect(summary.resumed).toEqual({ kept: 0, reused: 0 });
    expect(withoutCreatedAt(await readManageIndex(summary.indexPath))).toEqual(withoutCreatedAt(reference));
  });

  it.each([
    {
      why: /SHA-256/,
      spoil: async (out: string) => {
        // Same length, different bytes: only the hash tells.
        const p = path.join(out, 'part.0.tar');
        const buf = await fsp.readFile(p);
        buf[600] = buf[600]! ^ 0xff;
        await fsp.writeFile(p, buf);
      },
    },
    { why: /bytes, not/, spoil: (out: string) => fsp.truncate(path.join(out, 'part.1.tar'), 100) },
    { why: /missing/, spoil: (out: string) => fsp.rm(path.join(out, 'part.1.tar')) },
    { why: /numbered/, spoil: (out: string) => fsp.rm(path.join(out, 'part.0.tar.done.json')) },
    { why: /unreadable/, spoil: (out: string) => fsp.writeFile(path.join(out, 'part.2.tar.done.json'), '{"version":1') },
    {
      why: /describes/,
      spoil: async (out: string) => {
        const p = path.join(out, 'part.2.tar.done.json');
        await fsp.writeFile(p, (await fsp.readFile(p, 'utf8')).replace('"part.2.tar"', '"part.3.tar"'));
      },
    },
  ])('falls back to a clean start when the sidecars do not add up ($why)', async ({ why, spoil }) => {
    const out = newOut();
    await killAfter(opts(out), 8);
    const before = await completedOutputs(out);
    await spoil(out);
    const summary = await packBundle(opts(out, { resume: true }));
    expect(summary.resumed).toEqual({ restartedBecause: expect.stringMatching(why) });
    const index = await readManageIndex(summary.indexPath);
    expect(withoutCreatedAt(index)).toEqual(withoutCreatedAt(reference));
    await expectConsistent(out, index);
    const after = await completedOutputs(out);
    for (const [uri, id] of before) expect(after.get(uri)?.mtimeNs).not.toBe(id.mtimeNs);
  });

  it('falls back to a clean start when the limits or the profile changed', async () => {
    const out = newOut();
    await killAfter(opts(out), 6);
    const other = { ...limits, sliceEntries: 5 };
    const summary = await packBundle(opts(out, { resume: true, limits: other }));
    expect(summary.resumed).toEqual({ restartedBecause: expect.stringMatching(/another profile or limits/) });
    const fresh = await readManageIndex((await packBundle(opts(newOut(), { limits: other }))).indexPath);
    expect(withoutCreatedAt(await readManageIndex(summary.indexPath))).toEqual(withoutCreatedAt(fresh));

    const out2 = newOut();
    await killAfter(opts(out2), 6);
    const summary2 = await packBundle(opts(out2, { resume: true, profile: { excludes: ['b'] } }));
    expect(summary2.resumed).toMatchObject({ restartedBecause: expect.any(String) });
  });

  it('keeps the index consistent with the files when the data changed between attempts', async () => {
    const { data: changing, base: b } = await makeTree('changing');
    const out = path.join(b, 'out');
    const o = (more: Partial<PackOptions> = {}) => ({ ...opts(out, more), dataDir: changing });
    const first = await readManageIndex((await packBundle(o())).indexPath);
    // Kill once b/big2.bin is complete, before b/big3.bin is.
    const big2 = first.files.find((f) => f.entries[0]!.path === 'b/big2.bin')!.uri;
    await killAfter(o(), () => existsSync(path.join(out, `${big2}.done.json`)));
    expect(existsSync(path.join(out, `${big2}.done.json`))).toBe(true);
    // Now: a file after the resume point vanished, one grew, new ones appeared, b/big2.bin changed.
    await fsp.rm(path.join(changing, 'b/t0.txt'));
    await fsp.appendFile(path.join(changing, 'b/t1.txt'), 'more');
    await write(changing, 'b/new.txt', 'new');
    await write(changing, 'b/big25.bin', randomBytes(40 * KiB));
    await write(changing, 'z/big4.bin', randomBytes(70 * KiB));
    await fsp.appendFile(path.join(changing, 'b/big2.bin'), 'changed after it was packed');

    const summary = await packBundle(o({ resume: true }));
    const index = await readManageIndex(summary.indexPath);
    expect(summary.resumed).toMatchObject({ kept: expect.any(Number) });
    await expectConsistent(out, index);
    const byPath = new Map(index.files.flatMap((f) => f.entries).map((e) => [e.path, e]));
    expect(byPath.has('b/t0.txt')).toBe(false);
    expect(byPath.get('b/t1.txt')?.size).toBe(2004);
    expect(byPath.has('b/new.txt')).toBe(true);
    expect(byPath.get('z/big4.bin')?.size).toBe(70 * KiB);
    // b/big2.bin was completed before the kill: it is kept as it was packed, and described as such.
    expect(byPath.get('b/big2.bin')?.size).toBe(50 * KiB);
    expect(index.files.map((f) => f.uri).filter((u) => u.startsWith('file.'))).toEqual(index.files.filter((f) => f.kind === 'file').map((_, i) => `file.${i}`));
    expect((await fsp.readdir(out)).sort()).toEqual([...index.files.flatMap((f) => [f.uri, `${f.uri}.done.json`]), 'manage.json'].sort());
  });
});

describe('packBundle resume when big files completed after the last slice meet a changed tree', () => {
  // Entries a, b, c, d.big, e, f.big, g with two entries a slice: part.0 = [a, b] closes when c comes,
  // part.1 = [c, …] is open while d.big and f.big are packed: both are kept by re-use, not outright.
  const small = { sliceEntries: 2, sliceBytes: 64 * KiB, bigFileBytes: 32 * KiB };
  async function setUp(name: string) {
    const base = await fsp.mkdtemp(path.join(root, `${name}-`));
    const data = path.join(base, 'data');
    for (const n of ['a', 'b', 'c', 'e', 'g']) await write(data, n, randomBytes(100));
    await write(data, 'd.big', randomBytes(40 * KiB));
    await write(data, 'f.big', randomBytes(40 * KiB));
    const out = path.join(base, 'out');
    const o = (more: Partial<PackOptions> = {}): PackOptions => ({
      bundleName: 'b',
      dataDir: data,
      outDir: out,
      profile: { excludes: [] },
      limits: small,
      ...more,
    });
    // Killed once f.big (file.1) is complete: part.0 kept outright, file.0 and file.1 only by re-use.
    await killAfter(o(), () => existsSync(path.join(out, 'file.1.done.json')));
    expect((await fsp.readdir(out)).filter((n) => n.endsWith('.done.json')).sort()).toEqual(['file.0.done.json', 'file.1.done.json', 'part.0.tar.done.json']);
    return { data, out, o };
  }

  it('re-uses a big file whose place in the index moved, and records the new place', async () => {
    const { data, out, o } = await setUp('moved');
    await fsp.rm(path.join(data, 'c')); // d.big now comes before part.1 (index place 2 → 1)
    const before = await completedOutputs(out);
    const summary = await packBundle(o({ resume: true }));
    expect(summary.resumed).toEqual({ kept: 1, reused: 2 });
    const index = await readManageIndex(summary.indexPath);
    expect(index.files.map((f) => `${f.uri}:${f.entries.map((e) => e.path).join(',')}`)).toEqual([
      'part.0.tar:a,b',
      'file.0:d.big',
      'part.1.tar:e,g',
      'file.1:f.big',
    ]);
    await expectConsistent(out, index);
    for (const uri of ['file.0', 'file.1']) expect((await completedOutputs(out)).get(uri)).toEqual(before.get(uri));
    // The sidecars now say where the files are, so resuming the finished run keeps all of it.
    const again = await packBundle(o({ resume: true }));
    expect(again.resumed).toEqual({ kept: 4, reused: 0 });
    expect(withoutCreatedAt(await readManageIndex(again.indexPath))).toEqual(withoutCreatedAt(index));
  });

  it('drops the big files it can no longer number the same way', async () => {
    const { data, out, o } = await setUp('renumbered');
    await write(data, 'e.big', randomBytes(40 * KiB)); // between d.big (file.0) and f.big (file.1)
    const before = await completedOutputs(out);
    const summary = await packBundle(o({ resume: true }));
    expect(summary.resumed).toEqual({ kept: 1, reused: 1 });
    const index = await readManageIndex(summary.indexPath);
    expect(index.files.map((f) => `${f.uri}:${f.entries.map((e) => e.path).join(',')}`)).toEqual([
      'part.0.tar:a,b',
      'part.1.tar:c,e',
      'file.0:d.big',
      'file.1:e.big',
      'file.2:f.big',
      'part.2.tar:g',
    ]);
    await expectConsistent(out, index);
    expect((await completedOutputs(out)).get('file.0')).toEqual(before.get('file.0'));
    expect((await completedOutputs(out)).get('file.1')).not.toEqual(before.get('file.1'));
  });

  it('drops the big files beyond one that vanished', async () => {
    const { data, out, o } = await setUp('vanished');
    await fsp.rm(path.join(data, 'd.big'));
    const summary = await packBundle(o({ resume: true }));
    expect(summary.resumed).toEqual({ kept: 1, reused: 0 });
    const index = await readManageIndex(summary.indexPath);
    expect(index.files.map((f) => `${f.uri}:${f.entries.map((e) => e.path).join(',')}`)).toEqual([
      'part.0.tar:a,b',
      'part.1.tar:c,e',
      'file.0:f.big',
      'part.2.tar:g',
    ]);
    await expectConsistent(out, index);
    expect((await fsp.readdir(out)).sort()).toEqual([...index.files.flatMap((f) => [f.uri, `${f.uri}.done.json`]), 'manage.json'].sort());
  });

  it('drops a big file the walk does not meet again before it ends', async () => {
    const { data, out, o } = await setUp('gone-at-end');
    await fsp.rm(path.join(data, 'f.big'));
    await fsp.rm(path.join(data, 'g'));
    const summary = await packBundle(o({ resume: true }));
    expect(summary.resumed).toEqual({ kept: 1, reused: 1 });
    const index = await readManageIndex(summary.indexPath);
    expect(index.files.map((f) => f.uri)).toEqual(['part.0.tar', 'part.1.tar', 'file.0']);
    await expectConsistent(out, index);
    // No stale file.1 (or its sidecar) is left to mislead a later resume.
    expect((await fsp.readdir(out)).sort()).toEqual([...index.files.flatMap((f) => [f.uri, `${f.uri}.done.json`]), 'manage.json'].sort());
  });
});

/**
 * How many big files of a finished run come after its last slice's last
 * entry: a resume keeps those by re-use rather than outright.
 */
function countPendingAtEnd(index: ManageIndex): number {
  const last = index.files
    .filter((f) => f.kind === 'tar')
    .at(-1)!
    .entries.at(-1)!.path;
  const key = (p: string) => Buffer.from(p.replaceAll('/', '\0'));
  return index.files.filter((f) => f.kind === 'file' && Buffer.compare(key(f.entries[0]!.path), key(last)) > 0).length;
}
