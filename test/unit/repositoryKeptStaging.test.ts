/**
 * Stores through a kept staging tree (engine/repository/stagingCache.ts) on a
 * local restic repository: unchanged files are neither staged nor read by
 * restic again, yet every snapshot gives its set back byte for byte; a file
 * changed behind the tree's back is staged again, never trusted; a set that
 * does not match its index is refused and leaves the tree's record as it was;
 * a tree held by a live store is not shared.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ManageIndex } from '../../common/manageIndex.js';
import { Repository, SetMismatch } from '../../engine/repository/index.js';
import { stageSet } from '../../engine/repository/stageSet.js';
import { keptTreeKey } from '../../engine/repository/stagingCache.js';
import { resticWorkspace } from '../helpers/resticWorkspace.js';
import { makePackedSet, setDigest } from '../helpers/packedSet.js';

const w = resticWorkspace('ohbackup-kept-unit-');
let n = 0;

async function writeData(dir: string, files: number): Promise<void> {
  for (let i = 0; i < files; i++) {
    const p = path.join(dir, `s${i % 3}`, `f${String(i).padStart(3, '0')}.txt`);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, `${path.basename(dir)} ${i} `.repeat(300));
  }
  await fsp.writeFile(path.join(dir, 'big.bin'), Buffer.alloc(300 * 1024, 7));
}

const BUNDLE = 'com.u.kept';
const set = (data: string, name: string) => makePackedSet({ bundles: { [BUNDLE]: data }, out: path.join(w.root, name), scratch: w.root });

async function fixture() {
  const k = n++;
  const repo = await Repository.init({ repository: path.join(w.root, `repo-${k}`), passwordFile: w.passwordFile, tempDir: w.root });
  const data = path.join(w.root, `data-${k}`);
  await writeData(data, 30);
  const cache = path.join(w.root, `cache-${k}`);
  const tree = path.join(cache, keptTreeKey('u1', repo.name), 'tree');
  return { repo, data, cache, tree, k };
}

describe('a kept staging tree', () => {
  it('stages and lets restic read only what changed, and every snapshot gives its set back byte for byte', async (ctx) => {
    if (w.unavailable) return ctx.skip();
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

    const outA = path.join(w.root, `kept-out-a-${k}`);
    const outB = path.join(w.root, `kept-out-b-${k}`);
    await repo.materializeSet(a.snapshot.id, outA);
    await repo.materializeSet(b.snapshot.id, outB);
    expect(await setDigest(outA)).toEqual(await setDigest(first.dir));
    expect(await setDigest(outB)).toEqual(await setDigest(second.dir));
    expect((await repo.check({ readData: true })).ok).toBe(true);
  });

  it('never trusts a staged file something wrote to since: it is staged again from the set', async (ctx) => {
    if (w.unavailable) return ctx.skip();
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
    const out = path.join(w.root, `tamper-out-${k}`);
    await repo.materializeSet(b.snapshot.id, out);
    expect(await setDigest(out)).toEqual(await setDigest(second.dir));
  });

  it('refuses a set that does not match its index, even in an entry the tree holds unchanged, and the next store still gives its set back', async (ctx) => {
    if (w.unavailable) return ctx.skip();
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
    const out = path.join(w.root, `bad-out-${k}`);
    await repo.materializeSet(c.snapshot.id, out);
    expect(await setDigest(out)).toEqual(await setDigest(good.dir));
  });

  it('is not shared with a second store while a live one holds it: that one stages privately', async (ctx) => {
    if (w.unavailable) return ctx.skip();
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

/** Every file of a base folder (relative path → bytes as text). */
async function baseFiles(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const d of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) await walk(r);
      else out[r] = await fsp.readFile(path.join(dir, r), 'utf8');
    }
  };
  await walk('');
  return out;
}

async function watchedFixture() {
  const f = await fixture();
  const commands: string[] = [];
  const repo = await Repository.open({
    repository: path.join(w.root, `repo-${f.k}`),
    passwordFile: w.passwordFile,
    tempDir: w.root,
    onChild: (c) => commands.push(c.command),
  });
  return { ...f, repo, commands };
}

describe("an increment's base", () => {
  it('is read from the kept tree that stored it (the files restic would give), the full tree stays whole, and the increments restore byte for byte', async (ctx) => {
    if (w.unavailable) return ctx.skip();
    const { repo, data, cache, tree, k, commands } = await watchedFixture();
    const first = await set(data, `inc-a-${k}`);
    const a = await repo.storeSet(first.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    commands.length = 0;
    const baseKept = path.join(w.root, `inc-base-kept-${k}`);
    const fromTree = await repo.materializeBase('latest', baseKept, { device: 'u1', keepStaging: cache });
    expect(fromTree.id).toBe(a.snapshot.id);
    expect(fromTree.fromKeptTree).toBe(true);
    expect(commands).toEqual(['snapshots']); // nothing read from the repository but the list
    const baseRestic = path.join(w.root, `inc-base-restic-${k}`);
    expect((await repo.materializeBase('latest', baseRestic, { device: 'u1' })).fromKeptTree).toBe(false);
    expect(await baseFiles(baseKept)).toEqual(await baseFiles(baseRestic));

    const unchanged = path.join(tree, BUNDLE, 'data', 's1', 'f001.txt');
    const before = await fsp.stat(unchanged);
    await fsp.writeFile(path.join(data, 's0', 'f000.txt'), 'changed');
    await fsp.writeFile(path.join(data, 's0', 'new.txt'), 'new');
    const inc = await makePackedSet({ bundles: { [BUNDLE]: data }, out: path.join(w.root, `inc-b-${k}`), base: baseKept, scratch: w.root });
    const b = await repo.storeSet(inc.dir, { device: 'u1', base: fromTree.id }, undefined, { keepStaging: cache });
    // The increment staged into its own tree: the full one still holds every file as stored, for the next full backup.
    expect((await fsp.stat(unchanged)).ino).toBe(before.ino);
    expect((await fsp.stat(unchanged)).ctimeMs).toBe(before.ctimeMs);

    const base2 = path.join(w.root, `inc-base2-${k}`);
    const second = await repo.materializeBase('latest', base2, { device: 'u1', keepStaging: cache });
    expect([second.id, second.fromKeptTree]).toEqual([b.snapshot.id, true]);
    await fsp.writeFile(path.join(data, 's1', 'f001.txt'), 'changed too');
    const inc2 = await makePackedSet({ bundles: { [BUNDLE]: data }, out: path.join(w.root, `inc-c-${k}`), base: base2, scratch: w.root });
    const c = await repo.storeSet(inc2.dir, { device: 'u1', base: second.id }, undefined, { keepStaging: cache });

    const sets = await repo.materializeChain(c.snapshot.id, path.join(w.root, `inc-chain-${k}`));
    expect(sets).toHaveLength(3);
    expect(await setDigest(sets[0]!.dir)).toEqual(await setDigest(first.dir));
    expect(await setDigest(sets[1]!.dir)).toEqual(await setDigest(inc.dir));
    expect(await setDigest(sets[2]!.dir)).toEqual(await setDigest(inc2.dir));
    expect((await repo.check({ readData: true })).ok).toBe(true);
  });

  it('comes from restic when the kept tree is stale, was written to since, or its record does not hold', async (ctx) => {
    if (w.unavailable) return ctx.skip();
    const { repo, data, cache, tree, k } = await watchedFixture();
    const stateFile = path.join(path.dirname(tree), 'state.json');
    const first = await set(data, `untrusted-a-${k}`);
    await repo.storeSet(first.dir, { device: 'u1' }, undefined, { keepStaging: cache });
    const expectFromRestic = async (what: string) => {
      const viaTree = path.join(w.root, `untrusted-${what}-${k}`);
      const viaRestic = path.join(w.root, `untrusted-${what}-restic-${k}`);
      expect((await repo.materializeBase('latest', viaTree, { device: 'u1', keepStaging: cache })).fromKeptTree).toBe(false);
      await repo.materializeBase('latest', viaRestic, { device: 'u1' });
      expect(await baseFiles(viaTree)).toEqual(await baseFiles(viaRestic));
    };
    const manifest = path.join(tree, BUNDLE, 'manifest.jsonl');
    const kept = await fsp.readFile(manifest);

    // A hand in the tree: same size and mtime, only the ctime tells.
    const st = await fsp.stat(manifest);
    await fsp.writeFile(manifest, Buffer.alloc(kept.length, 0x20));
    await fsp.utimes(manifest, st.atime, st.mtime);
    await expectFromRestic('written');

    // A record made to match the changed file's stat: its SHA-256 still does not.
    const now = await fsp.stat(manifest, { bigint: true });
    const state = JSON.parse(await fsp.readFile(stateFile, 'utf8')) as { files: Array<[string, string, string, number, string, string]> };
    const rec = state.files.find((f) => f[0] === `${BUNDLE}/manifest.jsonl`)!;
    [rec[2], rec[3], rec[4], rec[5]] = [String(now.ino), Number(now.size), String(now.mtimeNs), String(now.ctimeNs)];
    await fsp.writeFile(stateFile, JSON.stringify(state));
    await expectFromRestic('forged');

    // A store that died after staging into the tree, before its snapshot was recorded: the tree holds another set now.
    await fsp.writeFile(path.join(data, 's0', 'f000.txt'), 'changed');
    const next = await set(data, `untrusted-b-${k}`);
    await stageSet(next.dir, tree, { previous: new Map() }); // what storeSet does before restic, which never ran
    expect(await repo.snapshots()).toHaveLength(1);
    await expectFromRestic('crashed');

    // Stale: the latest snapshot was not stored from this tree.
    await repo.storeSet((await set(data, `untrusted-c-${k}`)).dir, { device: 'u1' }, undefined, { keepStaging: cache });
    await repo.storeSet((await set(data, `untrusted-d-${k}`)).dir, { device: 'u1' });
    await expectFromRestic('stale');
  });

  it('is guessed from the newer kept tree with no restic call, and the guess holds only while the listing names it latest', async (ctx) => {
    if (w.unavailable) return ctx.skip();
    const { repo, data, cache, tree, k, commands } = await watchedFixture();
    expect(await repo.guessLatestBase(path.join(w.root, `guess-none-${k}`), { device: 'u1', keepStaging: cache })).toBeUndefined();
    const a = await repo.storeSet((await set(data, `guess-a-${k}`)).dir, { device: 'u1' }, undefined, { keepStaging: cache });
    commands.length = 0;
    const guessed = path.join(w.root, `guess-a-base-${k}`);
    const guess = await repo.guessLatestBase(guessed, { device: 'u1', keepStaging: cache });
    expect(commands).toEqual([]);
    expect(guess).toEqual({ id: a.snapshot.id, sessionId: a.snapshot.sessionId, bundles: [BUNDLE] });
    const viaRestic = path.join(w.root, `guess-a-restic-${k}`);
    await repo.materializeBase('latest', viaRestic, { device: 'u1' });
    expect(await baseFiles(guessed)).toEqual(await baseFiles(viaRestic));
    // Another device's newer snapshot does not move this one's latest, and is no confirmation for that device.
    await repo.storeSet((await set(data, `guess-other-${k}`)).dir, { device: 'u2' });
    const withOther = await repo.snapshots();
    expect(withOther.at(-1)!.device).toBe('u2');
    expect(repo.confirmsGuess(guess!, withOther, 'u1')?.id).toBe(a.snapshot.id);
    expect(repo.confirmsGuess(guess!, withOther, 'u2')).toBeUndefined();

    // An increment stored from its own tree is newer: the guess follows it.
    await fsp.writeFile(path.join(data, 's0', 'f000.txt'), 'changed');
    const inc = await makePackedSet({ bundles: { [BUNDLE]: data }, out: path.join(w.root, `guess-b-${k}`), base: guessed, scratch: w.root });
    const b = await repo.storeSet(inc.dir, { device: 'u1', base: a.snapshot.id }, undefined, { keepStaging: cache });
    const guess2 = await repo.guessLatestBase(path.join(w.root, `guess-b-base-${k}`), { device: 'u1', keepStaging: cache });
    expect(guess2?.id).toBe(b.snapshot.id);

    // A snapshot stored without the trees: the trees still guess the older one, and the listing refuses it.
    const c = await repo.storeSet((await set(data, `guess-c-${k}`)).dir, { device: 'u1' });
    const guess3 = await repo.guessLatestBase(path.join(w.root, `guess-c-base-${k}`), { device: 'u1', keepStaging: cache });
    expect(guess3?.id).toBe(b.snapshot.id);
    const listed = await repo.snapshots();
    expect(listed[listed.length - 1]!.id).toBe(c.snapshot.id);
    expect(repo.confirmsGuess(guess3!, listed, 'u1')).toBeUndefined();

    // A hand in the full tree's summary: that tree guesses nothing (its files are not what was stored).
    const summary = path.join(tree, 'backup_set.json');
    await fsp.appendFile(summary, ' ');
    const k2 = keptTreeKey('u1', repo.name, 'increment');
    await fsp.rm(path.join(cache, k2), { recursive: true });
    expect(await repo.guessLatestBase(path.join(w.root, `guess-d-base-${k}`), { device: 'u1', keepStaging: cache })).toBeUndefined();
  });
});
