import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { runBackup } from '../../client/runs/runBackup.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { writeSampleDevice, type SampleDeviceSummary } from '../../engine/sampleDevice.js';
import { loadBundle } from '../../engine/device.js';
import { writeBundle } from '../helpers/device.js';
import { compareTrees } from '../helpers/compareTrees.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { sha256File } from '../helpers/verifySet.js';

let root: string;
let device: SampleDeviceSummary;
let setDir: string;
const backupable = () => device.bundles.filter((b) => b.backupable).map((b) => b.name);

/** A backup set of `dataRoot`, made through the same code as `ohbackup backup`. */
async function backUp(dataRoot: string, out: string, bundles?: string[]): Promise<void> {
  const taskQueue = uniqueTaskQueue('set');
  configureTool(taskQueue);
  await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
    const r = await runBackup({ out, bundles });
    expect(r.outcome, JSON.stringify([r.error, r.bundles])).toBe('done');
  });
}

/** Restores `bundles` of `from` onto the device at `dataRoot`, with a worker for it. */
async function restoreOnto(dataRoot: string, from: string, bundles: string[], extra: Partial<Parameters<typeof restoreFromSet>[0]> = {}) {
  const taskQueue = uniqueTaskQueue('restore');
  configureTool(taskQueue);
  return withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, () => restoreFromSet({ from, bundles, ...extra }));
}

/** Runs `fn` with a worker for a new, empty device; answers the device's data root. */
async function onEmptyDevice(name: string, fn: (rec: Recorder) => Promise<void>): Promise<string> {
  const taskQueue = uniqueTaskQueue(`restore-${name}`);
  configureTool(taskQueue);
  const target = path.join(root, `${name}-device`);
  await mkdir(target);
  await withWorker({ taskQueue, dataRoot: target, stateDir: path.join(root, 'state') }, () => fn(new Recorder()));
  return target;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-restore-'));
  device = await writeSampleDevice(path.join(root, 'device'), { scale: 0.1, seed: 5 });
  setDir = path.join(root, 'set');
  await backUp(device.dir, setDir);
});

describe('SessionRestore', () => {
  it('round trip: restored into an empty data root, every bundle is identical to the source (bytes, modes, mtimes, empty folders); excluded files are absent', async () => {
    const target = path.join(root, 'empty-device');
    await mkdir(target);
    const rec = new Recorder(undefined, { observer: true });
    const result = await restoreOnto(target, setDir, backupable(), { observe: rec.callbacks });
    expect(result.bundles.map((b) => [b.bundleName, b.state, b.error?.message])).toEqual(backupable().map((b) => [b, 'done', undefined]));
    for (const name of backupable()) {
      const profile = await loadBundle(device.dir, name);
      if (!profile.ok) throw new Error(profile.error.message);
      expect(await compareTrees(path.join(device.dir, name, 'data'), path.join(target, name, 'data'), profile.config)).toEqual([]);
      // Order: begin < files < result < end, once each.
      const mine = rec.of(name).map((c) => c.cb);
      expect(mine[0]).toBe('onBundleBegin');
      expect(mine.slice(-2)).toEqual(['onResultReport', 'onBundleEnd']);
    }
    // The mixed bundle's excluded cache and *.tmp files did not travel.
    const mixed = await readdir(path.join(target, 'com.example.mixed', 'data'), { recursive: true });
    expect(mixed.filter((p) => p.startsWith('cache') || p.endsWith('.tmp'))).toEqual([]);
  });

  it('a tampered backup file fails its bundle with a clear error and leaves its data untouched; the others restore', async () => {
    const tampered = path.join(root, 'set-tampered');
    await backUp(device.dir, tampered, ['com.example.notes', 'com.example.docs']);
    const slice = path.join(tampered, 'com.example.notes', 'part.0.tar');
    // One byte changed in the middle of the slice (file data or a header, either must be caught).
    const fd = openSync(slice, 'r+');
    const at = Math.floor(statSync(slice).size / 2);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    writeSync(fd, Buffer.from([b[0]! ^ 0xff]), 0, 1, at);
    closeSync(fd);
    // Restore onto a device that already holds different data for notes.
    const target = path.join(root, 'busy-device');
    await writeBundle(target, { name: 'com.example.notes', files: { 'keep.txt': 'precious' } });
    const before = await sha256File(path.join(target, 'com.example.notes', 'data', 'keep.txt'));
    const result = await restoreOnto(target, tampered, ['com.example.notes', 'com.example.docs']);
    const notes = result.bundles.find((b) => b.bundleName === 'com.example.notes')!;
    expect(notes.state).toBe('failed');
    expect(notes.error?.code).toBe(13500008);
    expect(notes.error?.message).toMatch(/SHA-256 does not match|not a valid tar/);
    expect(await readdir(path.join(target, 'com.example.notes', 'data'))).toEqual(['keep.txt']);
    expect(await sha256File(path.join(target, 'com.example.notes', 'data', 'keep.txt'))).toBe(before);
    expect(result.bundles.find((b) => b.bundleName === 'com.example.docs')?.state).toBe('done');
  });

  it('restoreDeps: a bundle starts only after the bundles it depends on ended', async () => {
    const dev = path.join(root, 'deps-device');
    await writeBundle(dev, { name: 'com.d.app', config: { restoreDeps: 'com.d.base,com.d.lib' } });
    await writeBundle(dev, { name: 'com.d.lib', config: { restoreDeps: 'com.d.base' } });
    await writeBundle(dev, { name: 'com.d.base' });
    const set = path.join(root, 'set-deps');
    await backUp(dev, set);
    const rec = new Recorder(undefined, { observer: true });
    const target = path.join(root, 'deps-target');
    await mkdir(target);
    await restoreOnto(target, set, ['com.d.app', 'com.d.lib', 'com.d.base'], { observe: rec.callbacks });
    const at = (cb: string, b: string) => rec.calls.findIndex((c) => c.cb === cb && c.bundleName === b);
    expect(at('onBundleEnd', 'com.d.base')).toBeLessThan(at('onBundleBegin', 'com.d.lib'));
    expect(at('onBundleEnd', 'com.d.lib')).toBeLessThan(at('onBundleBegin', 'com.d.app'));
  });

  it("app_mapping_relation restores one bundle's data into another bundle", async () => {
    const target = path.join(root, 'mapped-device');
    await mkdir(target);
    const result = await restoreOnto(target, setDir, ['com.example.docs'], { map: { 'com.example.docs': 'com.example.docs2' } });
    expect(result.bundles[0]!.state).toBe('done');
    expect(await readdir(target)).toEqual(['com.example.docs2']);
    const profile = await loadBundle(device.dir, 'com.example.docs');
    if (!profile.ok) throw new Error('docs');
    expect(await compareTrees(path.join(device.dir, 'com.example.docs', 'data'), path.join(target, 'com.example.docs2', 'data'), profile.config)).toEqual([]);
    expect(JSON.parse(await readFile(path.join(target, 'com.example.docs2', 'bundle.json'), 'utf8')).name).toBe('com.example.docs2');
  });

  it('getFileHandle calls made together travel as one getFileHandles update, each answered on its own', async () => {
    await onEmptyDevice('batch', async (rec) => {
      const session = new backup.SessionRestore(rec.callbacks);
      const capsFd = openSync(path.join(setDir, 'capabilities.json'), 'r');
      await session.appendBundles(capsFd, ['com.example.docs']);
      closeSync(capsFd);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin' && x.bundleName === 'com.example.docs'));
      const asked = [
        session.getFileHandle({ bundleName: 'com.example.docs', uri: 'manage.json' }),
        session.getFileHandle({ bundleName: 'com.example.docs', uri: 'manage.json' }),
        session.getFileHandle({ bundleName: 'com.example.other', uri: 'x' }),
        session.getFileHandle({ bundleName: 'com.example.docs', uri: 'part.0.tar' }),
      ];
      const settled = await Promise.allSettled(asked);
      expect(settled.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code: number }).code))).toEqual(['ok', 13900020, 13900020, 'ok']);
      expect((settled[1] as PromiseRejectedResult).reason.message).toMatch(/manage\.json was asked for already/);
      await rec.until((c) => c.filter((x) => x.cb === 'onFileReady').length === 2);
      // Each file's fd is opened on its own, so their onFileReady may come in either order.
      expect(
        rec.calls
          .filter((c) => c.cb === 'onFileReady')
          .map((c) => [c.uri, c.code])
          .sort(),
      ).toEqual([
        ['manage.json', undefined],
        ['part.0.tar', undefined],
      ]);
      const history = await (await testClient()).workflow.getHandle(session.sessionId).fetchHistory();
      const updates = history.events.flatMap((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name ?? []);
      expect(updates.filter((u) => u.startsWith('getFileHandle'))).toEqual(['getFileHandles']);
      await session.release();
    });
  });

  it('refuses bad input: invalid capability file (13900020), a bundle it lacks (13500001), a bad uri (13900020), a second appendBundles (13900001)', async () => {
    const target = await onEmptyDevice('errors', async (rec) => {
      const bad = path.join(root, 'bad-caps.json');
      await writeFile(bad, '{"backupVersion": 16}');
      const badFd = openSync(bad, 'r');
      const session = new backup.SessionRestore(rec.callbacks);
      await expect(session.appendBundles(badFd, ['com.example.docs'])).rejects.toMatchObject({ code: 13900020 });
      closeSync(badFd);
      const capsFd = openSync(path.join(setDir, 'capabilities.json'), 'r');
      await session.appendBundles(capsFd, ['com.example.docs', 'com.example.nowhere']);
      await expect(session.appendBundles(capsFd, ['com.example.docs'])).rejects.toMatchObject({ code: 13900001 });
      closeSync(capsFd);
      await expect(session.getFileHandle({ bundleName: 'com.example.docs', uri: '../etc' })).rejects.toMatchObject({ code: 13900020 });
      await expect(session.getFileHandle({ bundleName: 'com.example.docs', uri: 'a/b' })).rejects.toMatchObject({ code: 13900020 });
      await expect(session.getFileHandle({ bundleName: 'com.example.other', uri: 'x' })).rejects.toMatchObject({ code: 13900020 });
      expect(() => session.getFileHandle({ bundleName: 7 } as never)).toThrow(expect.objectContaining({ code: 401 }));
      await rec.until((c) => c.some((x) => x.cb === 'onBundleEnd' && x.bundleName === 'com.example.nowhere'));
      expect(rec.of('com.example.nowhere').map((c) => [c.cb, c.code])).toEqual([
        ['onBundleBegin', 13500001],
        ['onBundleEnd', 13500001],
      ]);
      await session.release();
    });
    // Nothing of the refused calls reached the device.
    expect(await readdir(target)).toEqual(['com.example.docs']);
  });
});

describe('a worker killed with SIGKILL mid-restore', () => {
  it('is replaced and the restore completes, identical to the source', async () => {
    const { startWorkerProcess } = await import('../helpers/workerProcess.js');
    const target = path.join(root, 'kill-restore-device');
    await mkdir(target);
    const taskQueue = uniqueTaskQueue('restore-kill');
    configureTool(taskQueue);
    const stateDir = path.join(root, 'state');
    let worker = await startWorkerProcess({ taskQueue, dataRoot: target, stateDir });
    const rec = new Recorder(undefined, { observer: true });
    let killed: Promise<void> | undefined;
    const observe = {
      ...rec.callbacks,
      onFileReady: (err: never, file: never) => {
        rec.callbacks.onFileReady(err, file);
        // The first writable target handed over: kill the worker while the tool writes and publishes.
        killed ??= (async () => {
          await worker.kill('SIGKILL');
          await rec.until((c) => c.some((x) => x.cb === 'onBackupServiceDied'));
          worker = await startWorkerProcess({ taskQueue, dataRoot: target, stateDir });
        })();
      },
    };
    try {
      const result = await restoreFromSet({ from: setDir, bundles: backupable(), observe });
      await killed;
      expect(result.bundles.map((b) => b.state)).toEqual(backupable().map(() => 'done'));
    } finally {
      await worker.kill('SIGTERM');
    }
    expect(rec.count('onBackupServiceDied')).toBe(1);
    for (const name of backupable()) {
      const profile = await loadBundle(device.dir, name);
      if (!profile.ok) throw new Error(profile.error.message);
      expect(await compareTrees(path.join(device.dir, name, 'data'), path.join(target, name, 'data'), profile.config)).toEqual([]);
    }
  });
});

describe('restore refuses crafted archives', () => {
  it('entries reaching outside, links and device files fail the bundle (13500008) and nothing is written outside its data folder', async () => {
    const tar = (await import('tar-stream')).default;
    const { createHash } = await import('node:crypto');
    const { createWriteStream } = await import('node:fs');
    const { pipeline } = await import('node:stream/promises');
    const { listTree } = await import('../helpers/listTree.js');
    const cases: Array<{
      name: string;
      entries: Array<{ name: string; type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'fifo'; body?: string; linkname?: string }>;
    }> = [
      { name: 'dotdot', entries: [{ name: '../../evil.txt', body: 'x' }] },
      { name: 'absolute', entries: [{ name: '/tmp/ohbackup-evil.txt', body: 'x' }] },
      { name: 'normalised', entries: [{ name: 'a/./../../evil.txt', body: 'x' }] },
      {
        name: 'symlink',
        entries: [
          { name: 'ln', type: 'symlink', linkname: '/tmp' },
          { name: 'ln/evil.txt', body: 'x' },
        ],
      },
      { name: 'hardlink', entries: [{ name: 'hl', type: 'link', linkname: '/etc/passwd' }] },
      { name: 'device', entries: [{ name: 'dev', type: 'character-device' }] },
      { name: 'fifo', entries: [{ name: 'pipe', type: 'fifo' }] },
    ];
    const set = path.join(root, 'set-crafted');
    const target = path.join(root, 'crafted-device');
    await mkdir(target);
    const caps = JSON.parse(await readFile(path.join(setDir, 'capabilities.json'), 'utf8'));
    caps.bundleInfos = [];
    for (const c of cases) {
      const bundleName = `com.evil.${c.name}`;
      const dir = path.join(set, bundleName);
      await mkdir(dir, { recursive: true });
      const pack = tar.pack();
      const done = pipeline(pack, createWriteStream(path.join(dir, 'part.0.tar')));
      for (const e of c.entries) pack.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: 0o644 }, e.body ?? '');
      pack.finalize();
      await done;
      const bytes = await readFile(path.join(dir, 'part.0.tar'));
      const sha = createHash('sha256').update(bytes).digest('hex');
      const entries = c.entries.map((e) => ({
        path: e.name,
        kind: 'file' as const,
        size: (e.body ?? '').length,
        mode: 0o644,
        mtimeMs: 0,
        sha256: createHash('sha256')
          .update(e.body ?? '')
          .digest('hex'),
      }));
      const index = {
        version: 1,
        bundleName,
        createdAt: new Date().toISOString(),
        files: [{ uri: 'part.0.tar', kind: 'tar', size: bytes.length, sha256: sha, entries }],
        skipped: [],
        totals: { files: entries.length, dirs: 0, bytes: 1 },
      };
      await writeFile(path.join(dir, 'manage.json'), JSON.stringify(index));
      caps.bundleInfos.push({ ...(await JSON.parse(await readFile(path.join(setDir, 'capabilities.json'), 'utf8'))).bundleInfos[0], name: bundleName });
    }
    await writeFile(path.join(set, 'capabilities.json'), JSON.stringify(caps));
    const before = await listTree(root);
    const names = cases.map((c) => `com.evil.${c.name}`);
    const result = await restoreOnto(target, set, names);
    for (const b of result.bundles) {
      expect([b.bundleName, b.state, b.error?.code]).toEqual([b.bundleName, 'failed', 13500008]);
    }
    // The target device holds exactly the bundles' skeletons (made for the restore): no entry landed anywhere in them...
    const skeleton = names.flatMap((n) =>
      ['', '/backup', '/backup/backup', '/backup/restore', '/backup_config.json', '/bundle.json', '/data'].map((p) => path.join(target, n) + p),
    );
    expect(await listTree(target)).toEqual(skeleton.sort());
    // ...and nothing appeared anywhere else in this test's whole temp tree (the worker's state folder aside).
    const after = (await listTree(root)).filter((p) => !p.startsWith(`${target}/`) && !p.startsWith(path.join(root, 'state')));
    expect(after.filter((p) => !before.includes(p))).toEqual([]);
    await expect(readFile('/tmp/ohbackup-evil.txt')).rejects.toThrow();
  });
});

describe('the session surface on restore sessions', () => {
  it('updateTimer, cancel, getCompatibilityInfo (getRestoreCompatibilityInfo) and cleanBundleTempDir work as on backup sessions', async () => {
    const target = path.join(root, 'surface-device');
    await writeBundle(target, { name: 'com.example.docs', hooks: { getRestoreCompatibilityInfo: 'printf "restore:"; cat' } });
    await writeBundle(target, { name: 'com.example.notes' });
    const taskQueue = uniqueTaskQueue('restore-surface');
    configureTool(taskQueue);
    const rec = new Recorder();
    const answers: Array<number | boolean> = [];
    let session!: InstanceType<typeof backup.SessionRestore>;
    const cb: typeof rec.callbacks = {
      ...rec.callbacks,
      onBundleBegin: (err, name) => {
        rec.callbacks.onBundleBegin(err, name);
        // Neither bundle ever gets its files: one runs out of time, the other is cancelled.
        if (name === 'com.example.docs') answers.push(backup.updateTimer(name, 500));
        if (name === 'com.example.notes') answers.push(session.cancel(name));
      },
    };
    await withWorker({ taskQueue, dataRoot: target, stateDir: path.join(root, 'state') }, async () => {
      session = new backup.SessionRestore(cb);
      const capsFd = openSync(path.join(setDir, 'capabilities.json'), 'r');
      await session.appendBundles(capsFd, ['com.example.docs', 'com.example.notes']);
      closeSync(capsFd);
      expect(await session.getCompatibilityInfo('com.example.docs', 'v9')).toBe('restore:v9');
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      expect(await session.cleanBundleTempDir('com.example.docs')).toBe(true);
      await session.release();
    });
    expect(answers.sort()).toEqual([0, true]);
    expect(rec.of('com.example.docs').find((c) => c.cb === 'onBundleEnd')?.code).toBe(13500003);
    expect(rec.of('com.example.notes').find((c) => c.cb === 'onBundleEnd')?.code).toBe(13500010);
  });
});
