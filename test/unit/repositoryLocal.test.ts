/**
 * The repository library on a local restic repository, no Temporal: sets made
 * by the real packer. Slices out of restic's order still come back byte for
 * byte (through the spool); a set that does not match its index is never
 * stored; plain set folders moved as a chain still resolve; restic (and any
 * Go tool) is found, or refused with a clear message when too old.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSetChain } from '../../client/sets/chain.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import { GoToolMissing, findGoTool, locateGoTool } from '../../engine/goTool.js';
import { Repository, ResticTooOld, STATE_PASSWORD, SetMismatch, findRestic, openStateRepository } from '../../engine/repository/index.js';
import { resticWorkspace } from '../helpers/resticWorkspace.js';
import { makePackedSet, setDigest } from '../helpers/packedSet.js';

const w = resticWorkspace('ohbackup-repo-unit-');
let n = 0;

async function data(name: string, files: number, bytes = 3000): Promise<string> {
  const dir = path.join(w.root, name);
  for (let i = 0; i < files; i++) {
    const p = path.join(dir, `s${i % 3}`, `f${String(i).padStart(3, '0')}.txt`);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, `${name} ${i} `.repeat(Math.ceil(bytes / 10)));
  }
  await fsp.writeFile(path.join(dir, 'big.bin'), Buffer.alloc(300 * 1024, 7));
  return dir;
}

const newRepo = () => Repository.init({ repository: path.join(w.root, `repo-${n++}`), passwordFile: w.passwordFile, tempDir: w.root });

describe('a local repository', () => {
  it('re-makes slices byte for byte even when the index lists them out of restic order (spooled, not held in memory)', async (ctx) => {
    if (w.unavailable) return ctx.skip();
    const set = await makePackedSet({
      bundles: { 'com.u.order': await data('order', 120) },
      out: path.join(w.root, 'order-set'),
      scratch: w.root,
      limits: { bigFileBytes: 256 * 1024, sliceBytes: 64 * 1024, sliceEntries: 30 },
    });
    const indexPath = path.join(set.dir, 'com.u.order', 'manage.json');
    const index = JSON.parse(await fsp.readFile(indexPath, 'utf8')) as ManageIndex;
    const tars = index.files.filter((f) => f.kind === 'tar');
    expect(tars.length).toBeGreaterThanOrEqual(3);
    // The last slice first: restic's walk order now meets its entries after every other slice's.
    const reordered = [tars[tars.length - 1]!, ...index.files.filter((f) => f !== tars[tars.length - 1])];
    await fsp.writeFile(indexPath, JSON.stringify({ ...index, files: reordered }), { mode: 0o600 });
    const repo = await newRepo();
    await repo.storeSet(set.dir, { device: 'u1' });
    const out = path.join(w.root, 'order-out');
    await repo.materializeSet('latest', out);
    expect(await setDigest(out)).toEqual(await setDigest(set.dir));
    expect((await fsp.readdir(path.join(out, 'com.u.order'))).filter((x) => x.startsWith('.spool') || x.endsWith('.partial'))).toEqual([]);
  });

  it('never stores a set whose files do not match its index, and leaves no staging folder', async (ctx) => {
    if (w.unavailable) return ctx.skip();
    const set = await makePackedSet({ bundles: { 'com.u.bad': await data('bad', 20) }, out: path.join(w.root, 'bad-set'), scratch: w.root });
    const slice = path.join(set.dir, 'com.u.bad', 'part.0.tar');
    const fh = await fsp.open(slice, 'r+');
    await fh.write(Buffer.from('X'), 0, 1, 1024 + 10); // inside the first file's data
    await fh.close();
    const repo = await newRepo();
    const err = await repo.storeSet(set.dir, { device: 'u1' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(SetMismatch);
    expect((err as SetMismatch).bundleName).toBe('com.u.bad');
    expect((err as Error).message).toMatch(/SHA-256 differs from the index/);
    expect(await repo.snapshots()).toEqual([]);
    expect((await fsp.readdir(w.root)).filter((x) => x.startsWith('ohbackup-stage-'))).toEqual([]);
  });

  it('refuses an index that lists a path outside the bundle', async (ctx) => {
    if (w.unavailable) return ctx.skip();
    const set = await makePackedSet({ bundles: { 'com.u.path': await data('path', 3) }, out: path.join(w.root, 'path-set'), scratch: w.root });
    const indexPath = path.join(set.dir, 'com.u.path', 'manage.json');
    const index = JSON.parse(await fsp.readFile(indexPath, 'utf8')) as ManageIndex;
    index.files[0]!.entries[0]!.path = '../escape';
    await fsp.writeFile(indexPath, JSON.stringify(index));
    const repo = await newRepo();
    await expect(repo.storeSet(set.dir, { device: 'u1' })).rejects.toThrow(/'\.\.' segment/);
  });
});

describe('the state folder repository', () => {
  it('is made on first use with a 0600 password file, and opened after', async (ctx) => {
    if (w.unavailable) return ctx.skip();
    const state = path.join(w.root, 'state');
    const a = await openStateRepository(state, { tempDir: w.root });
    const st = await fsp.stat(path.join(state, STATE_PASSWORD));
    expect(st.mode & 0o777).toBe(0o600);
    const b = await openStateRepository(state, { tempDir: w.root });
    expect(b.name).toBe(a.name);
    expect(await b.snapshots()).toEqual([]);
  });
});

describe('plain set folders', () => {
  it('a chain moved as a whole resolves by its relative bases; an increment moved alone by the absolute one', async () => {
    const d = await data('moved', 6);
    const sets = path.join(w.root, 'sets-before');
    const full = await makePackedSet({ bundles: { 'com.u.m': d }, out: path.join(sets, 'full'), scratch: w.root });
    await fsp.writeFile(path.join(d, 'new.txt'), 'new');
    const inc = await makePackedSet({ bundles: { 'com.u.m': d }, out: path.join(sets, 'inc'), base: full.dir, scratch: w.root });
    const moved = path.join(w.root, 'sets-after');
    await fsp.rename(sets, moved);
    expect(readSetChain(path.join(moved, 'inc')).map((s) => s.dir)).toEqual([path.join(moved, 'full'), path.join(moved, 'inc')]);
    // Only the increment moves (the base stays where it was): the absolute path still finds it.
    await fsp.mkdir(sets);
    await fsp.rename(path.join(moved, 'full'), path.join(sets, 'full'));
    expect(readSetChain(path.join(moved, 'inc')).map((s) => s.dir)).toEqual([path.join(sets, 'full'), path.join(moved, 'inc')]);
    void inc;
  });
});

describe('finding tools', () => {
  it('a Go tool that is nowhere and may not be built: a message that says how to get it', async () => {
    const tool = { name: 'ohbackup-no-such-tool', module: 'example.com/none/cmd/none@v0.0.1', envVar: 'OHBACKUP_NO_SUCH_TOOL' };
    await expect(findGoTool(tool, { build: false, env: { PATH: '' } })).rejects.toThrow(GoToolMissing);
    await expect(findGoTool(tool, { build: false, env: { PATH: '' } })).rejects.toThrow(
      /go install example\.com\/none\/cmd\/none@v0\.0\.1.*OHBACKUP_NO_SUCH_TOOL/s,
    );
    await expect(locateGoTool(tool, { OHBACKUP_NO_SUCH_TOOL: path.join(w.root, 'nothing') })).rejects.toThrow(/not an executable/);
  });

  it('a restic older than the minimum is refused, naming what to do', async () => {
    const fake = path.join(w.root, 'old-restic');
    await fsp.writeFile(fake, '#!/bin/sh\necho "restic 0.14.0 compiled with go1.19.8 on linux/amd64"\n', { mode: 0o755 });
    const before = process.env.OHBACKUP_RESTIC;
    process.env.OHBACKUP_RESTIC = fake;
    try {
      const err = await findRestic({ build: false }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(ResticTooOld);
      expect((err as Error).message).toMatch(
        /restic 0\.14\.0; ohbackup needs 0\.18\.0 or newer.*go install github\.com\/restic\/restic\/cmd\/restic@v0\.18\.1/s,
      );
    } finally {
      if (before === undefined) delete process.env.OHBACKUP_RESTIC;
      else process.env.OHBACKUP_RESTIC = before;
    }
  });
});
