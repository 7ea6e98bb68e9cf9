/**
 * SetStager (engine/repository/stageSet.ts) staging bundles while their set
 * is still written, as a repository run does: what it stages is what
 * stageSet makes of the complete set (every data file and folder, its mode
 * and mtime); the summary has the last word (a bundle staged early but not done is
 * taken out); a big file checked early is placed only as it was checked.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SetMismatch } from '../../engine/repository/errors.js';
import { SetStager, stageSet } from '../../engine/repository/stageSet.js';
import { makePackedSet } from '../helpers/packedSet.js';

const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohbackup-stager-'));
afterAll(() => fsp.rm(root, { recursive: true, force: true }));
let n = 0;

const BUNDLES = ['com.s.a', 'com.s.b', 'com.s.c'];

async function writeData(dir: string, seed: number): Promise<void> {
  for (let i = 0; i < 40; i++) {
    const p = path.join(dir, `d${i % 4}`, `f${i}.txt`);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, `${seed} ${i} `.repeat(200 + i));
  }
  await fsp.mkdir(path.join(dir, 'media'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'media', 'big.bin'), Buffer.alloc(400 * 1024, seed));
}

/** Two sets of the same data (different sessions): one to stage early, one for stageSet. */
async function twoSets() {
  const k = n++;
  const data: Record<string, string> = {};
  for (const [i, b] of BUNDLES.entries()) {
    data[b] = path.join(root, `data-${k}`, b);
    await writeData(data[b], i + 1);
  }
  const make = (name: string) => makePackedSet({ bundles: data, out: path.join(root, `${name}-${k}`), scratch: root });
  return { early: await make('early'), plain: await make('plain'), k };
}

/** Every path under `dir`; under a bundle's data folder with its kind, mode, mtime and (files) SHA-256. */
async function treeOf(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      const st = await fsp.lstat(path.join(dir, r));
      // The set's own files (summary, indexes, manifests) name their session and are written as staged: only that they are there.
      // The bundle's folder and its data folder are the staging's own (made as staged).
      if (!r.includes(`${path.sep}data${path.sep}`)) {
        out[r] = e.isDirectory() ? 'dir' : 'file';
        if (e.isDirectory()) await walk(r);
        continue;
      }
      const what = e.isDirectory()
        ? 'dir'
        : createHash('sha256')
            .update(await fsp.readFile(path.join(dir, r)))
            .digest('hex');
      out[r] = `${what} ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs)}`;
      if (e.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}

/** The set's summary taken away (a session still running) and given back with `notDone` not done. */
async function withheldSummary(dir: string) {
  const file = path.join(dir, 'backup_set.json');
  const summary = JSON.parse(await fsp.readFile(file, 'utf8')) as { bundles: Array<{ bundleName: string; state: string }> };
  await fsp.rm(file);
  return (notDone: string[] = []) =>
    fsp.writeFile(file, JSON.stringify({ ...summary, bundles: summary.bundles.map((b) => (notDone.includes(b.bundleName) ? { ...b, state: 'failed' } : b)) }));
}

describe('SetStager', () => {
  it('stages bundles as they complete into what stageSet makes of the whole set; the summary has the last word', async () => {
    const { early, plain, k } = await twoSets();
    const giveBack = await withheldSummary(early.dir);
    const stage = path.join(root, `stage-${k}`);
    await fsp.mkdir(stage, { mode: 0o700 });
    // A kept tree's staging, big files moved: what a repository run does.
    const stager = new SetStager(stage, { previous: new Map(), moveBigFiles: true });
    stager.bundleDone(early.dir, 'com.s.a');
    stager.bundleDone(early.dir, 'com.s.c');
    await stager.settle();
    // Staged, but its big file is still in the set (the set's own flush and a fresh staging need it there).
    expect((await fsp.stat(path.join(stage, 'com.s.a', 'data', 'd1', 'f1.txt'))).isFile()).toBe(true);
    const aIndex = JSON.parse(await fsp.readFile(path.join(early.dir, 'com.s.a', 'manage.json'), 'utf8')) as { files: Array<{ kind: string; uri: string }> };
    const bigUri = aIndex.files.find((f) => f.kind !== 'tar')!.uri;
    expect((await fsp.stat(path.join(early.dir, 'com.s.a', bigUri))).size).toBe(400 * 1024);
    expect(await fsp.stat(path.join(stage, 'com.s.a', 'data', 'media', 'big.bin')).catch(() => undefined)).toBeUndefined();

    await giveBack(['com.s.c']);
    const r = await stager.finish(early.dir);
    expect(r.bundles).toEqual(['com.s.a', 'com.s.b']);
    expect(r.notStored).toEqual(['com.s.c']);
    await expect(fsp.stat(path.join(early.dir, 'com.s.a', bigUri))).rejects.toThrow(/ENOENT/); // moved now

    const plainGiveBack = await withheldSummary(plain.dir);
    await plainGiveBack(['com.s.c']);
    const stage2 = path.join(root, `stage2-${k}`);
    await fsp.mkdir(stage2, { mode: 0o700 });
    const p = await stageSet(plain.dir, stage2, { previous: new Map(), moveBigFiles: true });
    expect(await treeOf(stage)).toEqual(await treeOf(stage2));
    expect({ files: r.files, bytes: r.bytes, kept: r.kept }).toEqual({ files: p.files, bytes: p.bytes, kept: p.kept });
    expect([...r.records.keys()].filter((k) => !k.endsWith('backup_set.json')).sort()).toEqual(
      [...p.records.keys()].filter((k) => !k.endsWith('backup_set.json')).sort(),
    );
    expect([...r.records.keys()].some((rel) => rel.startsWith('com.s.c/'))).toBe(false);
  });

  it('reads a big file again when it changed after its early check, and refuses what no longer matches the index', async () => {
    const { early, k } = await twoSets();
    const giveBack = await withheldSummary(early.dir);
    const stage = path.join(root, `stage-changed-${k}`);
    await fsp.mkdir(stage, { mode: 0o700 });
    const stager = new SetStager(stage, { previous: new Map(), moveBigFiles: true });
    stager.bundleDone(early.dir, 'com.s.b');
    await stager.settle();
    const index = JSON.parse(await fsp.readFile(path.join(early.dir, 'com.s.b', 'manage.json'), 'utf8')) as { files: Array<{ kind: string; uri: string }> };
    const big = path.join(early.dir, 'com.s.b', index.files.find((f) => f.kind !== 'tar')!.uri);
    await fsp.writeFile(big, Buffer.alloc(400 * 1024, 99)); // same size, other bytes
    await giveBack();
    const err = await stager.finish(early.dir).catch((e: Error) => e);
    expect(err).toBeInstanceOf(SetMismatch);
    expect((err as SetMismatch).message).toMatch(/SHA-256 differs/);
    expect((err as SetMismatch).bundleName).toBe('com.s.b');
  });

  it('fails at finish when a bundle staged early does not match its index', async () => {
    const { early, k } = await twoSets();
    await withheldSummary(early.dir);
    const index = JSON.parse(await fsp.readFile(path.join(early.dir, 'com.s.a', 'manage.json'), 'utf8')) as { files: Array<{ kind: string; uri: string }> };
    const slice = path.join(early.dir, 'com.s.a', index.files.find((f) => f.kind === 'tar')!.uri);
    const bytes = await fsp.readFile(slice);
    bytes[bytes.length - 2048] ^= 0xff; // in its last entry (header, data or padding): the entry or the slice no longer matches the index
    await fsp.writeFile(slice, bytes);
    const stage = path.join(root, `stage-bad-${k}`);
    await fsp.mkdir(stage, { mode: 0o700 });
    const stager = new SetStager(stage, {});
    stager.bundleDone(early.dir, 'com.s.a');
    await stager.settle(); // the failure is kept for finish, not thrown into the session
    const err = await stager.finish(early.dir).catch((e: Error) => e);
    expect(err).toBeInstanceOf(SetMismatch);
  });
});
