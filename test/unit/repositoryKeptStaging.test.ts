/**
 * Stores through a kept staging tree (engine/repository/stagingCache.ts) on a
 * local restic repository: unchanged files are neither staged nor read by
 * restic again, yet every snapshot gives its set back byte for byte; a file
 * changed behind the tree's back is staged again, never trusted; a set that
 * does not match its index is refused and leaves the tree's record as it was;
 * a tree held by a live store is not shared.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManageIndex } from '../../common/manageIndex.js';
import { Repository, SetMismatch, findRestic } from '../../engine/repository/index.js';
import { keptTreeKey } from '../../engine/repository/stagingCache.js';
import { makePackedSet, setDigest } from '../helpers/packedSet.js';

let root: string;
let unavailable: string | undefined;
let passwordFile: string;
let n = 0;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohbackup-kept-unit-'));
  passwordFile = path.join(root, 'pw');
  await fsp.writeFile(passwordFile, 'unit-test-password', { mode: 0o600 });
  try {
    await findRestic();
  } catch (err) {
    unavailable = (err as Error).message;
    console.warn(`restic tests skipped: ${unavailable}`);
  }
}, 900_000);

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

async function writeData(dir: string, files: number): Promise<void> {
  for (let i = 0; i < files; i++) {
    const p = path.join(dir, `s${i % 3}`, `f${String(i).padStart(3, '0')}.txt`);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, `${path.basename(dir)} ${i} `.repeat(300));
  }
  await fsp.writeFile(path.join(dir, 'big.bin'), Buffer.alloc(300 * 1024, 7));
}

const BUNDLE = 'com.u.kept';
const set = (data: string, name: string) => makePackedSet({ bundles: { [BUNDLE]: data }, out: path.join(root, name), scratch: root });

async function fixture() {
  const k = n++;
  const repo = await Repository.init({ repository: path.join(root, `repo-${k}`), passwordFile, tempDir: root });
  const data = path.join(root, `data-${k}`);
  await writeData(data, 30);
  const cache = path.join(root, `cache-${k}`);
  const tree = path.join(cache, keptTreeKey('u1', repo.name), 'tree');
  return { repo, data, cache, tree, k };
}

describe('a kept staging tree', () => {
  it('stages and lets restic read only what changed, and every snapshot gives its set back byte for byte', async (ctx) => {
    if (unavailable) return ctx.skip();
    const { repo, data, cache, tree, k } = await fixture();
    const first = await set(data, `kept-a-${k}`);
    const a = await repo.storeSet(first.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    expect(a.kept).toBe(0);
    const unchanged = path.join(tree, BUNDLE, 'data', 's1', 'f001.txt');
    const big = path.join(tree, BUNDLE, 'data', 'big.bin');
    const before = { small: await fsp.stat(unchanged), big: await fsp.stat(big) };

    // One file changed, one gone, one new.
    await fsp.writeFile(path.join(data, 's0', 'f000.txt'), 'changed');
    await fsp.rm(path.join(data, 's2', 'f002.txt'));
    await fsp.writeFile(path.join(data, 's0', 'new.txt'), 'new');
    const second = await set(data, `kept-b-${k}`);
    const b = await repo.storeSet(second.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    // 31 files in the set: 29 unchanged (28 small + the big one).
    expect(b.kept).toBe(29);
    expect(b.summary.filesUnmodified).toBeGreaterThanOrEqual(29);
    expect(b.summary.filesNew + b.summary.filesChanged).toBeLessThanOrEqual(6); // the new and changed files, the index, manifest, summary…
    expect((await fsp.stat(unchanged)).ino).toBe(before.small.ino);
    expect((await fsp.stat(big)).ctimeMs).toBe(before.big.ctimeMs);
    await expect(fsp.stat(path.join(tree, BUNDLE, 'data', 's2', 'f002.txt'))).rejects.toThrow(/ENOENT/);

    const outA = path.join(root, `kept-out-a-${k}`);
    const outB = path.join(root, `kept-out-b-${k}`);
    await repo.materializeSet(a.snapshot.id, outA);
    await repo.materializeSet(b.snapshot.id, outB);
    expect(await setDigest(outA)).toEqual(await setDigest(first.dir));
    expect(await setDigest(outB)).toEqual(await setDigest(second.dir));
    expect((await repo.check({ readData: true })).ok).toBe(true);
  });

  it('never trusts a staged file something wrote to since: it is staged again from the set', async (ctx) => {
    if (unavailable) return ctx.skip();
    const { repo, data, cache, tree, k } = await fixture();
    const first = await set(data, `tamper-a-${k}`);
    await repo.storeSet(first.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    // Same size, same inode, mtime put back exactly as staging set it: only the ctime tells.
    const staged = path.join(tree, BUNDLE, 'data', 's1', 'f004.txt');
    const index = JSON.parse(await fsp.readFile(path.join(first.dir, BUNDLE, 'manage.json'), 'utf8')) as ManageIndex;
    const entry = index.files.flatMap((f) => f.entries).find((e) => e.path === 's1/f004.txt')!;
    const st = await fsp.stat(staged, { bigint: true });
    const bytes = await fsp.readFile(staged);
    await fsp.writeFile(staged, Buffer.alloc(bytes.length, 0x58));
    await fsp.utimes(staged, entry.mtimeMs / 1000, entry.mtimeMs / 1000);
    const after = await fsp.stat(staged, { bigint: true });
    expect([after.ino, after.size, after.mtimeNs]).toEqual([st.ino, st.size, st.mtimeNs]);
    const second = await set(data, `tamper-b-${k}`);
    const b = await repo.storeSet(second.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    expect(b.kept).toBe(30);
    expect(await fsp.readFile(staged)).toEqual(bytes);
    const out = path.join(root, `tamper-out-${k}`);
    await repo.materializeSet(b.snapshot.id, out);
    expect(await setDigest(out)).toEqual(await setDigest(second.dir));
  });

  it('refuses a set that does not match its index, even in an entry the tree holds unchanged, and the next store still gives its set back', async (ctx) => {
    if (unavailable) return ctx.skip();
    const { repo, data, cache, k } = await fixture();
    await repo.storeSet((await set(data, `bad-a-${k}`)).dir, { device: 'u1' }, undefined, { keepStaging: cache });
    await fsp.writeFile(path.join(data, 's1', 'f001.txt'), 'changed once');
    const bad = await set(data, `bad-b-${k}`);
    const slice = path.join(bad.dir, BUNDLE, 'part.0.tar');
    const fh = await fsp.open(slice, 'r+');
    // Inside the first file's data (s0/f000.txt, unchanged: the kept tree holds it as it was, the slice is still checked).
    await fh.write(Buffer.from('X'), 0, 1, 1024 + 10);
    await fh.close();
    const err = await repo.storeSet(bad.dir, { device: 'u1' }, undefined, { keepStaging: cache }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(SetMismatch);
    expect(await repo.snapshots()).toHaveLength(1);
    const good = await set(data, `bad-c-${k}`);
    const c = await repo.storeSet(good.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    const out = path.join(root, `bad-out-${k}`);
    await repo.materializeSet(c.snapshot.id, out);
    expect(await setDigest(out)).toEqual(await setDigest(good.dir));
  });

  it('is not shared with a second store while a live one holds it: that one stages privately', async (ctx) => {
    if (unavailable) return ctx.skip();
    const { repo, data, cache, tree, k } = await fixture();
    await repo.storeSet((await set(data, `lock-a-${k}`)).dir, { device: 'u1' }, undefined, { keepStaging: cache });
    const lock = path.join(path.dirname(tree), 'lock');
    await fsp.writeFile(lock, String(process.ppid)); // a live process holds it
    const second = await set(data, `lock-b-${k}`);
    const b = await repo.storeSet(second.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    expect(b.kept).toBe(0);
    expect(await fsp.readFile(lock, 'utf8')).toBe(String(process.ppid));
    await fsp.writeFile(lock, '999999999'); // gone: taken over
    const third = await set(data, `lock-c-${k}`);
    const c = await repo.storeSet(third.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    expect(c.kept).toBe(31);
    await expect(fsp.stat(lock)).rejects.toThrow(/ENOENT/);
  });
});
