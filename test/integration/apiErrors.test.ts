import { readFileSync, closeSync, fstatSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { CapabilitiesSchema } from '../../common/capabilities.js';
import { writeSampleDevice, type SampleDeviceSummary } from '../../engine/sampleDevice.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { appendBundlesUpdate } from '../../common/messages.js';
import { toBusinessError } from '../../client/failures.js';

let device: SampleDeviceSummary;
let stateDir: string;

beforeAll(async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-api-'));
  device = await writeSampleDevice(path.join(root, 'device'), { scale: 0.02, seed: 3 });
  stateDir = path.join(root, 'state');
});

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: number }).code;
  }
  return undefined;
}

async function rejectionCode(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: number }).code;
  }
  return undefined;
}

describe('module functions', () => {
  it('getBackupVersion answers the API level as JSON', () => {
    expect(JSON.parse(backup.getBackupVersion())).toEqual({ backupVersion: '16.0' });
  });

  it('getLocalCapabilities hands over a readable fd of the capability file, in both forms', async () => {
    const taskQueue = uniqueTaskQueue('caps');
    configureTool(taskQueue);
    await withWorker({ taskQueue, dataRoot: device.dir, stateDir }, async () => {
      const { fd } = await backup.getLocalCapabilities();
      expect(fstatSync(fd).isFile()).toBe(true);
      const caps = CapabilitiesSchema.parse(JSON.parse(readFileSync(fd, 'utf8')));
      closeSync(fd);
      expect(caps.bundleInfos.map((b) => b.name).sort()).toEqual(device.bundles.map((b) => b.name).sort());
      for (const b of device.bundles) {
        const info = caps.bundleInfos.find((i) => i.name === b.name)!;
        expect(info.allToBackup).toBe(b.backupable);
        expect(info.spaceOccupied).toBe(b.bytes);
      }
      const viaCallback = await new Promise<number>((resolve, reject) => backup.getLocalCapabilities((err, data) => (err ? reject(err) : resolve(data.fd))));
      expect(JSON.parse(readFileSync(viaCallback, 'utf8')).backupVersion).toBe('16.0');
      closeSync(viaCallback);
    });
  });

  it('updateTimer and updateSendRate check their arguments (401) and answer false outside a running bundle', () => {
    expect(codeOf(() => backup.updateTimer('com.example.notes', -1))).toBe(401);
    expect(codeOf(() => backup.updateTimer('com.example.notes', 14_400_001))).toBe(401);
    expect(codeOf(() => backup.updateTimer('com.example.notes', Number.NaN))).toBe(401);
    expect(codeOf(() => backup.updateTimer('', 1000))).toBe(401);
    expect(codeOf(() => backup.updateSendRate('com.example.notes', -5))).toBe(401);
    expect(codeOf(() => backup.updateSendRate(42 as unknown as string, 5))).toBe(401);
    expect(backup.updateTimer('com.example.notes', 1000)).toBe(false);
    expect(backup.updateSendRate('com.example.notes', 900)).toBe(false);
  });
});

describe('SessionBackup call order and arguments', () => {
  it('answers 401 for bad arguments, 13900001 for a second appendBundles and for any call after release', async () => {
    const taskQueue = uniqueTaskQueue('errors');
    configureTool(taskQueue);
    const rec = new Recorder();
    expect(codeOf(() => new backup.SessionBackup(undefined as never))).toBe(401);
    expect(codeOf(() => new backup.SessionBackup({} as never))).toBe(401);
    await withWorker({ taskQueue, dataRoot: device.dir, stateDir }, async () => {
      const session = new backup.SessionBackup(rec.callbacks);
      expect(codeOf(() => session.appendBundles([]))).toBe(401);
      expect(codeOf(() => session.appendBundles('com.example.notes' as never))).toBe(401);
      expect(codeOf(() => session.appendBundles(['../etc']))).toBe(401);
      // Any string is an info (opaque, as in the reference); a non-string is not.
      expect(codeOf(() => session.appendBundles(['com.example.notes'], [7 as never]))).toBe(401);
      expect(codeOf(() => session.appendBundles(['com.example.notes'], ['{}', '{}']))).toBe(401);
      expect(codeOf(() => session.cancel(7 as never))).toBe(401);

      await session.appendBundles(['com.example.docs']);
      expect(await rejectionCode(session.appendBundles(['com.example.notes']))).toBe(13900001);
      // The callback form reports the same through its callback.
      const viaCallback = await new Promise<number | undefined>((resolve) => session.appendBundles(['com.example.notes'], (err) => resolve(err?.code)));
      expect(viaCallback).toBe(13900001);

      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      expect(session.cancel('com.example.docs')).toBe(13500012);
      expect(session.cancel('com.example.never')).toBe(13500012);
      await session.release();
      expect(await rejectionCode(session.release())).toBe(13900001);
      expect(await rejectionCode(session.appendBundles(['com.example.notes']))).toBe(13900001);
      expect(await rejectionCode(session.getLocalCapabilities())).toBe(13900001);
    });
    // Only the one bundle ran; nothing of the rejected calls reached the session.
    expect(rec.calls.filter((c) => c.cb === 'onBundleBegin').map((c) => c.bundleName)).toEqual(['com.example.docs']);
  });

  it('a second tool appending to the same session is refused by the workflow itself (13900001)', async () => {
    const taskQueue = uniqueTaskQueue('errors2');
    configureTool(taskQueue);
    const rec = new Recorder();
    await withWorker({ taskQueue, dataRoot: device.dir, stateDir }, async () => {
      const first = new backup.SessionBackup(rec.callbacks);
      await first.appendBundles(['com.example.docs']);
      // Another tool, straight through Temporal: the workflow's update validator refuses it.
      const client = await testClient();
      const other = client.workflow
        .getHandle(first.sessionId)
        .executeUpdate(appendBundlesUpdate, { args: [{ bundles: [{ bundleName: 'com.example.notes' }] }] });
      expect(await rejectionCode(other.catch((e) => Promise.reject(toBusinessError(e))))).toBe(13900001);
      await client.connection.close();
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await first.release();
    });
  });
});
