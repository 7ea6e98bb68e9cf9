import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { writeSampleDevice } from '../../engine/sampleDevice.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';
import { startWorkerProcess } from '../helpers/workerProcess.js';

describe('a worker killed with SIGKILL mid-backup', () => {
  it('is replaced by a new worker process and the session finishes with every file intact, none twice', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-kill-'));
    const device = await writeSampleDevice(path.join(root, 'device'), { scale: 0.1, seed: 11 });
    const stateDir = path.join(root, 'state');
    const taskQueue = uniqueTaskQueue('kill');
    configureTool(taskQueue);
    const set = new BackupSetWriter(path.join(root, 'set'));
    await set.init();
    const rec = new Recorder(set);
    // Slow hand-over, so the kill lands while files are going out.
    const slow: typeof rec.callbacks = {
      ...rec.callbacks,
      onBundleBegin: (err, name) => {
        rec.callbacks.onBundleBegin(err, name);
        if (!err) expect(backup.updateSendRate(name, 2)).toBe(true);
      },
    };
    let worker = await startWorkerProcess({ taskQueue, dataRoot: device.dir, stateDir });
    const session = new backup.SessionBackup(slow);
    const names = device.bundles.filter((b) => b.backupable).map((b) => b.name);
    await session.appendBundles(names);

    await rec.until((c) => c.some((x) => x.cb === 'onFileReady'));
    await worker.kill('SIGKILL');
    // With no worker serving the session, the tool is told the service died; then a new worker takes over.
    await rec.until((c) => c.some((x) => x.cb === 'onBackupServiceDied'));
    worker = await startWorkerProcess({ taskQueue, dataRoot: device.dir, stateDir });
    try {
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await set.flush();
      await session.release();
    } finally {
      await worker.kill('SIGTERM');
    }

    for (const name of names) {
      expect(rec.of(name).find((c) => c.cb === 'onBundleEnd')?.code).toBeUndefined();
      const uris = rec
        .of(name)
        .filter((c) => c.cb === 'onFileReady')
        .map((c) => c.uri);
      expect(new Set(uris).size).toBe(uris.length);
      expect(await compareBundleSet(set.dir, device.dir, name)).toEqual([]);
    }
    expect(rec.count('onBackupServiceDied')).toBe(1);
  });
});
