/**
 * The backup service dying: worker processes killed with SIGKILL at random
 * moments, and the Temporal dev server killed and restarted on its database.
 * Every session completes, every file verifies, nothing is handed over twice,
 * and the tool hears of each outage once.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { startDevServer } from '../../workers/devServer.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';
import { startWorkerProcess } from '../helpers/workerProcess.js';

const NAMES = ['com.f.one', 'com.f.two'];

async function device(prefix: string) {
  const root = await mkdtemp(path.join(os.tmpdir(), `ohbackup-${prefix}-`));
  const dataRoot = path.join(root, 'device');
  for (const [i, name] of NAMES.entries()) {
    const small: Record<string, string> = {};
    for (let k = 0; k < 50; k++) small[`notes/n${k}.txt`] = `${name} note ${k}\n`.repeat(k + 1);
    await writeBundle(dataRoot, { name, files: { ...bigFiles(3 + i, 'media'), ...small } });
  }
  return { root, dataRoot, stateDir: path.join(root, 'state') };
}

/** Callbacks that keep files in a set and slow each bundle's hand-over, so faults land mid-stream. */
async function recorderFor(root: string, rate: number) {
  const set = new BackupSetWriter(path.join(root, `set-${Math.random().toString(36).slice(2)}`));
  await set.init();
  const rec = new Recorder(set);
  const callbacks: typeof rec.callbacks = {
    ...rec.callbacks,
    onBundleBegin: (err, name) => {
      rec.callbacks.onBundleBegin(err, name);
      if (!err) backup.updateSendRate(name, rate);
    },
  };
  return { set, rec, callbacks };
}

async function expectComplete(rec: Recorder, set: BackupSetWriter, dataRoot: string) {
  for (const name of NAMES) {
    expect(rec.of(name).find((c) => c.cb === 'onBundleEnd')).toEqual({ cb: 'onBundleEnd', bundleName: name, code: undefined, message: undefined });
    const uris = rec
      .of(name)
      .filter((c) => c.cb === 'onFileReady')
      .map((c) => c.uri);
    expect(new Set(uris).size, `${name}: a file handed over twice`).toBe(uris.length);
    expect(await compareBundleSet(set.dir, dataRoot, name)).toEqual([]);
  }
}

describe('service death', () => {
  // Each kill is told after some 15 s with no answer (client/sessions/outage.ts): 10 of them, on a loaded machine.
  it('10 sessions, the worker killed with SIGKILL at a random moment in each and restarted: all complete, nothing lost or repeated', async () => {
    const d = await device('fault');
    const taskQueue = uniqueTaskQueue('fault');
    configureTool(taskQueue);
    let worker = await startWorkerProcess({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir });
    try {
      for (let round = 0; round < 10; round++) {
        const { set, rec, callbacks } = await recorderFor(d.root, 4);
        const session = new backup.SessionBackup(callbacks);
        await session.appendBundles(NAMES);
        // A random moment: during prepare, packing or hand-over (fault injection, not a wait).
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 2500));
        await worker.kill('SIGKILL');
        await rec.until((c) => c.some((x) => x.cb === 'onBackupServiceDied'));
        worker = await startWorkerProcess({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir });
        await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
        await set.flush();
        await session.release();
        expect(rec.count('onBackupServiceDied'), `round ${round}: one outage, one notice`).toBe(1);
        await expectComplete(rec, set, d.dataRoot);
      }
    } finally {
      await worker.kill('SIGTERM');
    }
  }, 900_000);

  it('the Temporal dev server killed and restarted on its database mid-session: the session completes', async () => {
    const d = await device('server');
    const dbFile = path.join(d.root, 'temporal.db');
    let server = await startDevServer({ headless: true, dbFile });
    const port = Number(server.address.split(':')[1]);
    const taskQueue = uniqueTaskQueue('server');
    configureTool(taskQueue, server.address);
    const { set, rec, callbacks } = await recorderFor(d.root, 3);
    try {
      await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir, address: server.address }, async () => {
        const session = new backup.SessionBackup(callbacks);
        await session.appendBundles(NAMES);
        await rec.until((c) => c.filter((x) => x.cb === 'onFileReady').length >= 2);
        await server.stop('SIGKILL');
        await rec.until((c) => c.some((x) => x.cb === 'onBackupServiceDied'));
        server = await startDevServer({ headless: true, dbFile, port });
        await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
        await set.flush();
        await session.release();
      });
    } finally {
      await server.stop();
    }
    expect(rec.count('onBackupServiceDied')).toBe(1);
    await expectComplete(rec, set, d.dataRoot);
  }, 300_000);
});
