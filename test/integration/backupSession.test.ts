import { mkdtemp, readdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { writeSampleDevice, type SampleDeviceSummary } from '../../engine/sampleDevice.js';
import { Recorder, type Recorded } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';

let device: SampleDeviceSummary;
let stateDir: string;

beforeAll(async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-backup-'));
  device = await writeSampleDevice(path.join(root, 'device'), { scale: 0.1, seed: 7 });
  stateDir = path.join(root, 'state');
});

/** The order api.md §3 promises for one bundle. */
function expectBundleOrder(calls: Recorded[], bundleName: string, ok: boolean): void {
  const mine = calls.filter((c) => c.bundleName === bundleName).map((c) => c.cb);
  expect(mine[0]).toBe('onBundleBegin');
  expect(mine.at(-1)).toBe('onBundleEnd');
  expect(mine.filter((c) => c === 'onBundleBegin')).toHaveLength(1);
  expect(mine.filter((c) => c === 'onBundleEnd')).toHaveLength(1);
  if (ok) {
    expect(mine.at(-2)).toBe('onResultReport');
    expect(mine.filter((c) => c === 'onResultReport')).toHaveLength(1);
    expect(mine.filter((c) => c === 'onFileReady').length).toBeGreaterThan(0);
  }
  const end = calls.findIndex((c) => c.cb === 'onBundleEnd' && c.bundleName === bundleName);
  const all = calls.findIndex((c) => c.cb === 'onAllBundlesEnd');
  expect(all).toBeGreaterThan(end);
}

describe('SessionBackup', () => {
  it('backs up the sample device: files match byte for byte, callbacks in order, bad bundles get 13500001', async () => {
    const taskQueue = uniqueTaskQueue('backup');
    configureTool(taskQueue);
    const out = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-set-'));
    const set = new BackupSetWriter(out);
    await set.init();
    const rec = new Recorder(set);
    await withWorker({ taskQueue, dataRoot: device.dir, stateDir }, async () => {
      const session = new backup.SessionBackup(rec.callbacks);
      const names = [...device.bundles.map((b) => b.name), 'com.example.absent'];
      await session.appendBundles(names);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await set.flush();
      await session.release();
    });

    for (const b of device.bundles) {
      if (!b.backupable) continue;
      expectBundleOrder(rec.calls, b.name, true);
      expect(rec.of(b.name).find((c) => c.cb === 'onBundleEnd')?.code).toBeUndefined();
      expect(await compareBundleSet(out, device.dir, b.name)).toEqual([]);
      // No file handed over twice.
      const uris = rec
        .of(b.name)
        .filter((c) => c.cb === 'onFileReady')
        .map((c) => c.uri);
      expect(new Set(uris).size).toBe(uris.length);
      expect(uris.at(-1)).toBe('manage.json');
    }
    for (const name of ['com.example.locked', 'com.example.absent']) {
      expectBundleOrder(rec.calls, name, false);
      expect(rec.of(name).find((c) => c.cb === 'onBundleBegin')?.code).toBe(13500001);
      expect(rec.of(name).some((c) => c.cb === 'onFileReady')).toBe(false);
    }
    expect(rec.count('onAllBundlesEnd')).toBe(1);
    // The backup output is private to its owner.
    expect((await stat(path.join(out, 'com.example.notes'))).mode & 0o777).toBe(0o700);
    // release cleaned the device's temp area.
    expect(await readdir(path.join(device.dir, 'com.example.notes', 'backup', 'backup'))).toEqual([]);
  });
});
