/**
 * Repositories with real parts: restic (found or built), a local repository
 * and an S3 one served by versitygw, sets made by a real worker (runBackup)
 * and by the real packer. Every scenario runs on both back ends.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../client/runs/runBackup.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { compareBundleSet } from '../../client/sets/verify.js';
import { writeSampleDevice, type SampleDeviceSummary } from '../../engine/sampleDevice.js';
import { loadBundle } from '../../engine/device.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { findRestic, Repository, RepositoryNotFound, WrongPassword, type RepositoryOptions, type StoreProgress } from '../../engine/repository/index.js';
import { backupToRepository, restoreFromRepository } from '../../client/runs/repositoryRuns.js';
import { compareTrees } from '../helpers/compareTrees.js';
import { writeBundle } from '../helpers/device.js';
import { testClient } from '../helpers/temporal.js';
import { watch } from '../helpers/history.js';
import { makePackedSet, setDigest, sha256Of } from '../helpers/packedSet.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { startVersitygw, type S3Gateway } from '../helpers/versitygw.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/storeSet.mjs', import.meta.url));
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
let root: string;
let passwordFile: string;
let gateway: S3Gateway | undefined;
let unavailable: string | undefined;
let device: SampleDeviceSummary;
let realSet: string;
let bucketN = 0;
/** Every restic child's command line, to prove no secret is on one. */
const cmdlines: string[] = [];

const backupable = () => device.bundles.filter((b) => b.backupable).map((b) => b.name);

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-repo-'));
  passwordFile = path.join(root, 'password');
  await writeFile(passwordFile, PASSWORD, { mode: 0o600 });
  try {
    await findRestic();
    gateway = await startVersitygw(path.join(root, 's3'));
  } catch (err) {
    unavailable = (err as Error).message;
    console.warn(`repository tests skipped: ${unavailable}`);
    return;
  }
  device = await writeSampleDevice(path.join(root, 'device'), { scale: 0.1, seed: 13 });
  realSet = path.join(root, 'real-set');
  const taskQueue = uniqueTaskQueue('repo');
  configureTool(taskQueue);
  await withWorker({ taskQueue, dataRoot: device.dir, stateDir: path.join(root, 'state') }, async () => {
    const r = await runBackup({ out: realSet });
    expect(r.outcome, JSON.stringify([r.error, r.bundles])).toBe('done');
  });
}, 900_000);

afterAll(async () => {
  await gateway?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

type Backend = 'local' | 's3';

/** A fresh, empty repository location on the back end. */
function location(backend: Backend, name: string): RepositoryOptions {
  const onChild = ({ pid }: { pid: number }) => {
    try {
      cmdlines.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '));
    } catch {
      // already gone
    }
  };
  if (backend === 'local') return { repository: path.join(root, 'repos', `${name}-${bucketN++}`), passwordFile, onChild, tempDir: root };
  return {
    repository: gateway!.repository(`${name.toLowerCase()}-${bucketN++}`),
    passwordFile,
    env: { ...process.env, AWS_ACCESS_KEY_ID: gateway!.accessKey, AWS_SECRET_ACCESS_KEY: gateway!.secretKey },
    onChild,
    tempDir: root,
  };
}

/** Data folders for packed sets: `small` files of `smallBytes` and two big ones, random bytes. */
async function makeData(dir: string, small: number, smallBytes: number, bigBytes: number): Promise<void> {
  for (let i = 0; i < small; i++) {
    const p = path.join(dir, `d${i % 10}`, `f${i}.bin`);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, randomBytes(smallBytes));
  }
  await mkdir(path.join(dir, 'empty'), { recursive: true });
  for (let i = 0; i < 2; i++) await writeFile(path.join(dir, `big${i}.bin`), randomBytes(bigBytes));
}

/** Rewrites `count` of the small files with new bytes (and a later mtime). */
async function changeSmall(dir: string, count: number, step: number, smallBytes: number): Promise<void> {
  for (let k = 0; k < count; k++) {
    const i = k * step;
    await writeFile(path.join(dir, `d${i % 10}`, `f${i}.bin`), randomBytes(smallBytes));
  }
}

/** The largest file under the repository's data/ folder (a pack), local or in the gateway's folder. */
async function largestPack(backend: Backend, repo: RepositoryOptions): Promise<string> {
  const dataDir = backend === 'local' ? path.join(repo.repository, 'data') : path.join(root, 's3', repo.repository.split('/').pop()!, 'data');
  let best = { file: '', size: -1 };
  for (const sub of await readdir(dataDir)) {
    for (const f of await readdir(path.join(dataDir, sub))) {
      const p = path.join(dataDir, sub, f);
      const st = await stat(p);
      if (st.isFile() && st.size > best.size) best = { file: p, size: st.size };
    }
  }
  return best.file;
}

describe.each<Backend>(['local', 's3'])('repository on %s', (backend) => {
  it('stores a real set as one snapshot, lists it, materializes one bundle and all byte for byte, and restores from it', async (ctx) => {
    if (unavailable) return ctx.skip();
    const loc = location(backend, 'real');
    const repo = await Repository.init(loc);
    const progress: StoreProgress[] = [];
    const stored = await repo.storeSet(realSet, { device: 'phone-1' }, (p) => progress.push(p));
    expect(stored.existed).toBe(false);
    expect(stored.bundles.sort()).toEqual(backupable().sort());
    expect(stored.summary.dataAdded).toBeGreaterThan(0);
    expect(stored.summary.filesNew).toBeGreaterThan(0);

    const list = await repo.snapshots();
    expect(list).toHaveLength(1);
    const s = list[0]!;
    const summary = JSON.parse(readFileSync(path.join(realSet, 'backup_set.json'), 'utf8')) as { sessionId: string };
    expect(s).toMatchObject({ id: stored.snapshot.id, device: 'phone-1', kind: 'backup', sessionId: summary.sessionId });
    expect(s.tags).toEqual(expect.arrayContaining(['ohbackup', 'device=phone-1', `session=${summary.sessionId}`, 'kind=backup']));
    expect(s.bundles.sort()).toEqual(backupable().sort());
    expect(await repo.snapshots({ device: 'other' })).toEqual([]);
    expect((await repo.snapshots({ bundle: backupable()[0]! })).map((x) => x.id)).toEqual([s.id]);
    // Storing the same session again stores nothing.
    expect((await repo.storeSet(realSet, { device: 'phone-1' })).existed).toBe(true);

    const all = path.join(root, `mat-all-${backend}`);
    await repo.materializeSet('latest', all);
    expect(await setDigest(all)).toEqual(await setDigest(realSet));
    for (const b of backupable()) expect(await compareBundleSet(all, device.dir, b)).toEqual([]);
    const one = backupable()[1]!;
    const single = path.join(root, `mat-one-${backend}`);
    const m = await repo.materializeSet(s.shortId, single, { bundles: [one] });
    expect(m.summary.bundles.map((b) => b.bundleName)).toEqual([one]);
    expect(await setDigest(single)).toEqual(await setDigest(realSet, [one]));
    // Every slice and big file of the re-made set matches the index's SHA-256.
    const index = await readManageIndex(path.join(single, one, 'manage.json'));
    for (const f of index.files) expect(await sha256Of(path.join(single, one, f.uri))).toBe(f.sha256);

    // The materialized set restores through today's restore path onto an empty device.
    const target = path.join(root, `restored-${backend}`);
    await mkdir(target);
    const taskQueue = uniqueTaskQueue('repo-restore');
    configureTool(taskQueue);
    const r = await withWorker({ taskQueue, dataRoot: target, stateDir: path.join(root, 'state') }, () => restoreFromSet({ from: all, bundles: backupable() }));
    expect(r.bundles.map((b) => [b.bundleName, b.state])).toEqual(backupable().map((b) => [b, 'done']));
    for (const name of backupable()) {
      const profile = await loadBundle(device.dir, name);
      if (!profile.ok) throw new Error(profile.error.message);
      expect(await compareTrees(path.join(device.dir, name, 'data'), path.join(target, name, 'data'), profile.config)).toEqual([]);
    }

    const check = await repo.check({ readData: true });
    expect(check, JSON.stringify(check)).toMatchObject({ ok: true, damaged: [], snapshotsChecked: 1 });
  });

  it('opening: no repository, a missing bucket and a wrong password are told apart; no secret on any command line', async (ctx) => {
    if (unavailable) return ctx.skip();
    const loc = location(backend, 'missing');
    await expect(Repository.open(loc)).rejects.toBeInstanceOf(RepositoryNotFound);
    await Repository.init(loc);
    await Repository.open(loc);
    const wrong = path.join(root, `wrong-${backend}`);
    await writeFile(wrong, 'not the password', { mode: 0o600 });
    const err = await Repository.open({ ...loc, passwordFile: wrong }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(WrongPassword);
    expect(String((err as Error).message)).not.toContain('not the password');
    expect(cmdlines.length).toBeGreaterThan(0);
    for (const c of cmdlines) {
      expect(c).not.toContain(PASSWORD);
      if (gateway) expect(c).not.toContain(gateway.secretKey);
    }
  });

  it('a tampered pack file: check --read-data is damaged and names the snapshot and bundle', async (ctx) => {
    if (unavailable) return ctx.skip();
    const data = path.join(root, `tamper-data-${backend}`);
    const data2 = path.join(root, `tamper-data2-${backend}`);
    await makeData(data, 40, 8 * 1024, 512 * 1024);
    await makeData(data2, 40, 8 * 1024, 512 * 1024);
    const set = await makePackedSet({ bundles: { 'com.t.one': data, 'com.t.two': data2 }, out: path.join(root, `tamper-set-${backend}`), scratch: root });
    const loc = location(backend, 'tamper');
    const repo = await Repository.init(loc);
    const { snapshot } = await repo.storeSet(set.dir, { device: 'dev-t' });
    expect((await repo.check({ readData: true })).ok).toBe(true);
    const pack = await largestPack(backend, loc);
    const fh = await open(pack, 'r+');
    const { size } = await fh.stat();
    await fh.write(randomBytes(64), 0, 64, Math.floor(size / 2));
    await fh.close();
    const check = await repo.check({ readData: true });
    expect(check.ok).toBe(false);
    expect(check.restic.ok).toBe(false);
    expect(check.damaged.length).toBeGreaterThan(0);
    expect(
      check.damaged.every((d) => d.snapshot === snapshot.id),
      JSON.stringify(check.damaged),
    ).toBe(true);
    const damaged = [...new Set(check.damaged.map((d) => d.bundleName))].sort();
    expect(damaged.length, JSON.stringify(check.damaged)).toBeGreaterThan(0);
    expect(damaged.every((b) => ['com.t.one', 'com.t.two'].includes(b))).toBe(true);
    // A restore from it refuses exactly the damaged bundles (untar failed, 13500008) and rebuilds the others byte for byte.
    const out = path.join(root, `tamper-out-${backend}`);
    const m = await repo.materializeSet('latest', out, { keepGoing: true });
    expect(m.failed.map((f) => f.bundleName).sort()).toEqual(damaged);
    expect(m.failed.every((f) => f.error.code === 13500008)).toBe(true);
    const healthy = ['com.t.one', 'com.t.two'].filter((b) => !damaged.includes(b));
    expect(m.bundles).toEqual(healthy);
    expect(await setDigest(out)).toEqual(await setDigest(set.dir, healthy));
    await expect(repo.materializeSet('latest', path.join(root, `tamper-strict-${backend}`))).rejects.toThrow(/com\.t\./);
  });

  it('chains: full + two increments, forget --keep-last 1 keeps the whole chain, prune, then what remains materializes byte for byte; diff; restic copy keeps the chain', async (ctx) => {
    if (unavailable) return ctx.skip();
    const data = path.join(root, `chain-data-${backend}`);
    await makeData(data, 60, 4 * 1024, 300 * 1024);
    const sets = path.join(root, `chain-sets-${backend}`);
    const t0 = Date.now() - 4 * 86_400_000;
    const old = await makePackedSet({ bundles: { 'com.c.app': data }, out: path.join(sets, 'old'), scratch: root, createdAt: new Date(t0) });
    const full = await makePackedSet({ bundles: { 'com.c.app': data }, out: path.join(sets, 'full'), scratch: root, createdAt: new Date(t0 + 86_400_000) });
    await changeSmall(data, 3, 7, 4 * 1024);
    await rm(path.join(data, 'd5', 'f5.bin'));
    const inc1 = await makePackedSet({
      bundles: { 'com.c.app': data },
      out: path.join(sets, 'inc1'),
      base: full.dir,
      scratch: root,
      createdAt: new Date(t0 + 2 * 86_400_000),
    });
    await changeSmall(data, 2, 11, 4 * 1024);
    await writeFile(path.join(data, 'new.txt'), 'new in the second increment');
    const inc2 = await makePackedSet({
      bundles: { 'com.c.app': data },
      out: path.join(sets, 'inc2'),
      base: inc1.dir,
      scratch: root,
      createdAt: new Date(t0 + 3 * 86_400_000),
    });

    const loc = location(backend, 'chain');
    const repo = await Repository.init(loc);
    const sOld = (await repo.storeSet(old.dir, { device: 'dev-c' })).snapshot;
    const sFull = (await repo.storeSet(full.dir, { device: 'dev-c' })).snapshot;
    const sInc1 = (await repo.storeSet(inc1.dir, { device: 'dev-c' })).snapshot;
    const sInc2 = (await repo.storeSet(inc2.dir, { device: 'dev-c' })).snapshot;
    expect(sInc1.base).toEqual({ id: sFull.id, sessionId: full.sessionId });
    expect(sInc2.base).toEqual({ id: sInc1.id, sessionId: inc1.sessionId });
    expect((await repo.chain('latest')).map((s) => s.id)).toEqual([sFull.id, sInc1.id, sInc2.id]);

    const diff = await repo.diff(sFull.id, sInc2.id);
    const d = diff.bundles.find((b) => b.bundleName === 'com.c.app')!;
    expect(d.new).toEqual(['new.txt']);
    expect(d.deleted).toEqual(['d5/f5.bin']);
    expect(d.changed.sort()).toEqual(['d0/f0.bin', 'd1/f11.bin', 'd4/f14.bin', 'd7/f7.bin'].sort());

    const dry = await repo.forget({ keepLast: 1 }, { dryRun: true });
    expect(dry.forgotten).toEqual([sOld.id]);
    const why = new Map(dry.decisions.map((x) => [x.snapshot.id, x]));
    expect(why.get(sInc2.id)!.keep).toBe(true);
    expect(why.get(sInc1.id)!.reasons.join()).toContain(`base of ${sInc2.shortId}`);
    expect(why.get(sFull.id)!.reasons.join()).toContain(`base of ${sInc1.shortId}`);
    expect((await repo.snapshots()).length).toBe(4);

    const done = await repo.forget({ keepLast: 1 }, { prune: true });
    expect(done.forgotten).toEqual([sOld.id]);
    expect((await repo.snapshots()).map((s) => s.id)).toEqual([sFull.id, sInc1.id, sInc2.id]);
    expect((await repo.check({ readData: true })).ok).toBe(true);
    const out = path.join(root, `chain-out-${backend}`);
    const rebuilt = await repo.materializeChain('latest', out);
    expect(rebuilt).toHaveLength(3);
    for (const [k, src] of [full, inc1, inc2].entries()) expect(await setDigest(rebuilt[k]!.dir)).toEqual(await setDigest(src.dir));
    const lastSummary = JSON.parse(readFileSync(path.join(rebuilt[2]!.dir, 'backup_set.json'), 'utf8')) as { baseRelative?: string; baseSession?: string };
    expect(lastSummary).toMatchObject({ baseRelative: `../${path.basename(rebuilt[1]!.dir)}`, baseSession: inc1.sessionId });

    // restic copy into a second repository: new snapshot IDs, same chain.
    const second = await Repository.init(location(backend, 'copy'));
    await second.copyFrom(repo);
    const copied = await second.chain('latest', { device: 'dev-c' });
    expect(copied.map((s) => s.sessionId)).toEqual([full.sessionId, inc1.sessionId, inc2.sessionId]);
    expect(copied.map((s) => s.id)).not.toEqual([sFull.id, sInc1.id, sInc2.id]);
    const outCopy = path.join(root, `chain-copy-${backend}`);
    const again = await second.materializeChain('latest', outCopy, { device: 'dev-c' });
    expect(await setDigest(again[2]!.dir)).toEqual(await setDigest(inc2.dir));
  });

  it('two sessions stored at once into one repository: both snapshots, check-clean (restic locks)', async (ctx) => {
    if (unavailable) return ctx.skip();
    const d1 = path.join(root, `conc-1-${backend}`);
    const d2 = path.join(root, `conc-2-${backend}`);
    await makeData(d1, 30, 4 * 1024, 2 * 1024 * 1024);
    await makeData(d2, 30, 4 * 1024, 2 * 1024 * 1024);
    const s1 = await makePackedSet({ bundles: { 'com.p.one': d1 }, out: path.join(root, `conc-set-1-${backend}`), scratch: root });
    const s2 = await makePackedSet({ bundles: { 'com.p.two': d2 }, out: path.join(root, `conc-set-2-${backend}`), scratch: root });
    const loc = location(backend, 'conc');
    await Repository.init(loc);
    const [a, b] = await Promise.all([
      Repository.open(loc).then((r) => r.storeSet(s1.dir, { device: 'dev-p1' })),
      Repository.open(loc).then((r) => r.storeSet(s2.dir, { device: 'dev-p2' })),
    ]);
    const repo = await Repository.open(loc);
    expect((await repo.snapshots()).map((s) => s.id).sort()).toEqual([a.snapshot.id, b.snapshot.id].sort());
    expect((await repo.check({ readData: true })).ok).toBe(true);
    const out = path.join(root, `conc-out-${backend}`);
    await repo.materializeSet('latest', out, { device: 'dev-p2' });
    expect(await setDigest(out)).toEqual(await setDigest(s2.dir));
  });

  it('restic killed (SIGKILL) mid-store leaves the repository check-clean, and the next store succeeds', async (ctx) => {
    if (unavailable) return ctx.skip();
    const data = path.join(root, `kill-data-${backend}`);
    await makeData(data, 20, 4 * 1024, 24 * 1024 * 1024);
    const set = await makePackedSet({ bundles: { 'com.k.app': data }, out: path.join(root, `kill-set-${backend}`), scratch: root });
    const loc = location(backend, 'kill');
    await Repository.init(loc);
    let backupPid: number | undefined;
    let killed = false;
    const repo = await Repository.open({
      ...loc,
      progressFps: 30,
      onChild: (c) => {
        if (c.command === 'backup') backupPid = c.pid;
      },
    });
    const err = await repo
      .storeSet(set.dir, { device: 'dev-k' }, (p) => {
        // Killed once restic has stored some of the data.
        if (!killed && backupPid && p.bytesDone > 0) {
          killed = true;
          process.kill(backupPid, 'SIGKILL');
        }
      })
      .catch((e: Error) => e);
    expect(killed).toBe(true);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('SIGKILL');
    expect(await repo.snapshots()).toEqual([]);
    expect((await repo.check()).ok).toBe(true);
    const ok = await repo.storeSet(set.dir, { device: 'dev-k' });
    expect(ok.existed).toBe(false);
    expect((await repo.check({ readData: true })).ok).toBe(true);
    // No staging folder is left behind.
    expect((await readdir(root)).filter((n) => n.startsWith('ohbackup-stage-'))).toEqual([]);
  });

  it('the tool killed (SIGKILL of its whole process group, restic included) mid-store: check-clean, its staging folder cleared, the next store succeeds', async (ctx) => {
    if (unavailable) return ctx.skip();
    const data = path.join(root, `toolkill-data-${backend}`);
    await makeData(data, 20, 4 * 1024, 24 * 1024 * 1024);
    const set = await makePackedSet({ bundles: { 'com.k.tool': data }, out: path.join(root, `toolkill-set-${backend}`), scratch: root });
    const loc = location(backend, 'toolkill');
    await Repository.init(loc);
    const temp = path.join(root, `toolkill-tmp-${backend}`);
    await mkdir(temp);
    const env = { ...(loc.env ?? process.env) };
    const tool = spawn(process.execPath, [FIXTURE, loc.repository, passwordFile, set.dir, temp, 'dev-tk'], {
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => tool.on('exit', (_code, sig) => resolve(sig)));
    let resticPid: number | undefined;
    const lines = readline.createInterface({ input: tool.stdout });
    for await (const line of lines) {
      const m = JSON.parse(line) as { child?: string; pid?: number; progress?: { bytesDone: number }; done?: string };
      if (m.child === 'backup') resticPid = m.pid;
      if (m.done) throw new Error('the store finished before it could be killed');
      if (resticPid && m.progress && m.progress.bytesDone > 0) {
        process.kill(-tool.pid!, 'SIGKILL');
        break;
      }
    }
    expect(await exited).toBe('SIGKILL');
    // The orphaned restic is reaped by init a moment later; until then its lock looks alive to restic.
    await watch(async () => !existsSync(`/proc/${resticPid}`));
    const repo = await Repository.open({ ...loc, tempDir: temp });
    expect(await repo.snapshots()).toEqual([]);
    expect((await repo.check()).ok).toBe(true);
    expect((await readdir(temp)).filter((n) => n.startsWith(`ohbackup-stage-${tool.pid}-`))).toHaveLength(1);
    const ok = await repo.storeSet(set.dir, { device: 'dev-tk' });
    expect(ok.existed).toBe(false);
    expect(await readdir(temp)).toEqual([]);
    expect((await repo.check({ readData: true })).ok).toBe(true);
  });

  it('a device backed up into the repository (full, then an increment, then an increment of a snapshot stored without the kept trees) restores from it, a repository gone fails the increment with its own error, and the password is in no workflow history', async (ctx) => {
    if (unavailable) return ctx.skip();
    const started = new Date();
    const dataRoot = path.join(root, `runs-device-${backend}`);
    const big = randomBytes(3 * 1024 * 1024);
    await writeBundle(dataRoot, { name: 'com.r.notes', files: { 'a.txt': 'alpha', 'dir/b.txt': 'beta', 'big.bin': big } });
    await writeBundle(dataRoot, { name: 'com.r.photos', files: { 'p1.jpg': randomBytes(5000), 'p2.jpg': randomBytes(7000) } });
    const loc = location(backend, 'runs');
    const commands: string[] = [];
    const repo = await Repository.init({
      ...loc,
      onChild: (c) => {
        loc.onChild?.(c);
        commands.push(c.command);
      },
    });
    const taskQueue = uniqueTaskQueue('repo-runs');
    configureTool(taskQueue);
    const { full, inc } = await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, `state-runs-${backend}`) }, async () => {
      const full = await backupToRepository({ repository: repo, device: 'phone-r', incremental: true, tempDir: root });
      await writeFile(path.join(dataRoot, 'com.r.notes', 'data', 'a.txt'), 'alpha, edited');
      await writeFile(path.join(dataRoot, 'com.r.notes', 'data', 'c.txt'), 'new');
      await rm(path.join(dataRoot, 'com.r.photos', 'data', 'p1.jpg'));
      commands.length = 0;
      const inc = await backupToRepository({ repository: repo, device: 'phone-r', base: 'latest', tempDir: root });
      return { full, inc };
    });
    // One listing resolves the base and serves the store.
    expect(commands.filter((c) => c === 'snapshots')).toEqual(['snapshots']);
    expect(full.outcome, JSON.stringify(full)).toBe('done');
    expect(inc.outcome, JSON.stringify(inc)).toBe('done');
    expect(inc.snapshot!.base).toEqual({ id: full.snapshot!.id, sessionId: full.sessionId });
    expect(inc.store!.dataAdded).toBeLessThan(full.store!.dataAdded);

    const target = path.join(root, `runs-target-${backend}`);
    await mkdir(target);
    const restoreQueue = uniqueTaskQueue('repo-runs-restore');
    configureTool(restoreQueue);
    const r = await withWorker({ taskQueue: restoreQueue, dataRoot: target, stateDir: path.join(root, `state-runs-t-${backend}`) }, () =>
      restoreFromRepository({ repository: repo, snapshot: 'latest', device: 'phone-r', tempDir: root }),
    );
    expect(r.outcome, JSON.stringify(r.bundles)).toBe('done');
    expect(r.snapshots.map((s) => s.id)).toEqual([full.snapshot!.id, inc.snapshot!.id]);
    for (const name of ['com.r.notes', 'com.r.photos']) {
      expect(await compareTrees(path.join(dataRoot, name, 'data'), path.join(target, name, 'data'), { excludes: [] })).toEqual([]);
    }
    expect((await readdir(root)).filter((x) => x.startsWith('ohbackup-run-'))).toEqual([]);

    // Secrets never enter Temporal: scan every history written since this test started.
    const client = await testClient();
    let scanned = 0;
    for await (const wf of client.workflow.list({ query: `StartTime >= "${started.toISOString()}"` })) {
      const history = JSON.stringify(await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory());
      scanned++;
      expect(history).not.toContain(PASSWORD);
      if (gateway) expect(history).not.toContain(gateway.secretKey);
      expect(history).not.toContain(passwordFile);
    }
    expect(scanned).toBeGreaterThan(2);

    // A snapshot stored without the kept trees is latest now: the session that started on the trees' guess is
    // not stored, and the increment stored is one of that snapshot.
    const againQueue = uniqueTaskQueue('repo-runs-again');
    const seen: string[] = [];
    configureTool(againQueue);
    const { priv, inc2 } = await withWorker({ taskQueue: againQueue, dataRoot, stateDir: path.join(root, `state-runs-again-${backend}`) }, async () => {
      const priv = await backupToRepository({ repository: repo, device: 'phone-r', incremental: true, stagingDir: false, tempDir: root });
      await writeFile(path.join(dataRoot, 'com.r.notes', 'data', 'dir', 'b.txt'), 'beta, edited');
      commands.length = 0;
      const inc2 = await backupToRepository({
        repository: repo,
        device: 'phone-r',
        base: 'latest',
        tempDir: root,
        onProgress: (e) => {
          if (e.type === 'start') seen.push(e.sessionId);
          if (e.type === 'notice' && e.message.includes('is not the latest')) seen.push(`notice: ${e.message}`);
        },
      });
      return { priv, inc2 };
    });
    // Two sessions: the one on the trees' guess (the kept trees' newer snapshot), not stored, then, after a notice
    // that names the guess and the latest, the one stored.
    expect(seen).toHaveLength(3);
    expect(seen[1]).toBe(
      `notice: The kept staging tree's last snapshot ${inc.snapshot!.id.slice(0, 8)} is not the latest of phone-r (${priv.snapshot!.shortId} is): ` +
        `that session's set is dropped and the backup runs again as an increment of ${priv.snapshot!.shortId}.`,
    );
    expect(seen[2]).toBe(inc2.sessionId);
    expect(commands.filter((c) => c === 'snapshots')).toEqual(['snapshots']);
    expect(commands.filter((c) => c === 'backup')).toEqual(['backup']);
    expect([priv.outcome, inc2.outcome], JSON.stringify([priv.error, inc2.error])).toEqual(['done', 'done']);
    expect(inc2.baseSnapshot?.id).toBe(priv.snapshot!.id);
    expect(inc2.snapshot!.base).toEqual({ id: priv.snapshot!.id, sessionId: priv.sessionId });
    const target2 = path.join(root, `runs-target2-${backend}`);
    await mkdir(target2);
    configureTool(restoreQueue);
    const r2 = await withWorker({ taskQueue: restoreQueue, dataRoot: target2, stateDir: path.join(root, `state-runs-t2-${backend}`) }, () =>
      restoreFromRepository({ repository: repo, snapshot: 'latest', device: 'phone-r', tempDir: root }),
    );
    expect(r2.snapshots.map((s) => s.id)).toEqual([priv.snapshot!.id, inc2.snapshot!.id]);
    for (const name of ['com.r.notes', 'com.r.photos']) {
      expect(await compareTrees(path.join(dataRoot, name, 'data'), path.join(target2, name, 'data'), { excludes: [] })).toEqual([]);
    }
    expect((await readdir(root)).filter((x) => x.startsWith('ohbackup-run-'))).toEqual([]);

    // The repository gone: the listing beside the guessed session fails, and that is the run's error, as before.
    if (backend === 'local') {
      const moved = `${loc.repository}-moved`;
      await rename(loc.repository, moved);
      configureTool(againQueue);
      const gone = await withWorker({ taskQueue: againQueue, dataRoot, stateDir: path.join(root, `state-runs-again-${backend}`) }, () =>
        backupToRepository({ repository: repo, device: 'phone-r', base: 'latest', tempDir: root }).catch((e: unknown) => e),
      );
      expect(gone).toBeInstanceOf(RepositoryNotFound);
      await rename(moved, loc.repository);
      expect((await repo.snapshots()).map((s) => s.id)).toEqual([full.snapshot!.id, inc.snapshot!.id, priv.snapshot!.id, inc2.snapshot!.id]);
    }
  });

  it('dedup: a second full store after changing 1% of the small files adds at most 2% of the first', async (ctx) => {
    if (unavailable) return ctx.skip();
    const data = path.join(root, `dedup-data-${backend}`);
    const SMALL = 400;
    const SMALL_BYTES = 64 * 1024;
    await makeData(data, SMALL, SMALL_BYTES, 8 * 1024 * 1024);
    const first = await makePackedSet({ bundles: { 'com.d.app': data }, out: path.join(root, `dedup-1-${backend}`), scratch: root });
    await changeSmall(data, SMALL / 100, 37, SMALL_BYTES);
    const second = await makePackedSet({ bundles: { 'com.d.app': data }, out: path.join(root, `dedup-2-${backend}`), scratch: root });
    const repo = await Repository.init(location(backend, 'dedup'));
    const a = await repo.storeSet(first.dir, { device: 'dev-d' });
    const sizeA = await repo.rawDataSize();
    const b = await repo.storeSet(second.dir, { device: 'dev-d' });
    const sizeB = await repo.rawDataSize();
    const ratio = b.summary.dataAdded / a.summary.dataAdded;
    console.log(
      `[dedup ${backend}] first store added ${a.summary.dataAdded} B (of ${a.summary.bytesProcessed} read), ` +
        `second added ${b.summary.dataAdded} B = ${(ratio * 100).toFixed(2)}% of the first; raw data ${sizeA} → ${sizeB} B (+${(((sizeB - sizeA) / sizeA) * 100).toFixed(2)}%)`,
    );
    expect(ratio).toBeLessThanOrEqual(0.02);
    expect((sizeB - sizeA) / sizeA).toBeLessThanOrEqual(0.02);

    // Ten nightly full runs, 1% of the small files changed before each: the repository stays within 1.3× the first.
    for (let night = 3; night <= 10; night++) {
      await changeSmall(data, SMALL / 100, 31 + night, SMALL_BYTES);
      const set = await makePackedSet({ bundles: { 'com.d.app': data }, out: path.join(root, `dedup-${night}-${backend}`), scratch: root });
      await repo.storeSet(set.dir, { device: 'dev-d' });
      await rm(set.dir, { recursive: true, force: true });
    }
    const sizeTen = await repo.rawDataSize();
    console.log(`[dedup ${backend}] after ten full runs the raw data is ${sizeTen} B = ${(sizeTen / sizeA).toFixed(3)}× the first run`);
    expect(sizeTen / sizeA).toBeLessThanOrEqual(1.3);
  });
});
