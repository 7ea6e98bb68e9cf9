/**
 * A worker per device: `ohbackup worker --device ID` (here OHBACKUP_DEVICE, as
 * the worker process reads it) serves the device's own task queue. A session
 * that names the device runs its session workflow on the ordinary queue,
 * served by a worker without that device, and everything that touches the
 * device's files on the device's queue. The ordinary worker's own data root
 * holds decoys of the same bundles, so anything misrouted would show in the
 * data as well as in the histories.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, closeSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSummary } from '../helpers/cliJson.js';
import { backup } from '../../client/index.js';
import { SET_CAPABILITIES } from '../../client/sets/layout.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { deviceTaskQueue } from '../../common/deviceQueue.js';
import { bundleWorkflowId } from '../../common/session.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { activityRuns, processIdentity, workflowTaskWorkers } from '../helpers/history.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, temporalAddress, testClient, uniqueTaskQueue } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';
import { startWorkerProcess } from '../helpers/workerProcess.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function ohbackup(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const SHARED = ['com.example.d1', 'com.example.d2'];
const ONLY_ON_DEVICE = 'com.example.only1';

describe('a worker per device', () => {
  it('gets the bundle work of a session that names its device, while a worker without it serves the session workflow', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-device-'));
    const deviceRoot = path.join(root, 'device');
    const plainRoot = path.join(root, 'plain');
    for (const [i, name] of SHARED.entries()) {
      await writeBundle(deviceRoot, { name, files: { 'a.txt': `device ${name}`, 'dir/b.txt': 'b'.repeat(5000), ...bigFiles(1, `big${i}-`) } });
      await writeBundle(plainRoot, { name, files: { 'decoy.txt': `decoy ${name}` } });
    }
    await writeBundle(deviceRoot, {
      name: ONLY_ON_DEVICE,
      files: { 'x.bin': Buffer.alloc(4321, 7) },
      hooks: { getBackupInfo: 'echo "{\\"on\\":\\"device\\"}"', getBackupCompatibilityInfo: 'echo compatible-here' },
    });

    const taskQueue = uniqueTaskQueue('dev');
    const device = `phone-${randomUUID().slice(0, 8)}`;
    const devQueue = deviceTaskQueue(device);
    const plain = await startWorkerProcess({ taskQueue, dataRoot: plainRoot, stateDir: path.join(root, 'plain-state') });
    const onDevice = await startWorkerProcess({ taskQueue, dataRoot: deviceRoot, stateDir: path.join(root, 'device-state'), env: { OHBACKUP_DEVICE: device } });
    const plainId = processIdentity(plain.child.pid);
    const deviceId = processIdentity(onDevice.child.pid);
    const client = await testClient();
    try {
      expect(onDevice.output()).toContain(`ready on task queue ${devQueue}`);
      configureTool(taskQueue);
      const set = new BackupSetWriter(path.join(root, 'set'));
      await set.init();
      const rec = new Recorder(set);
      const session = new backup.SessionBackup(rec.callbacks, { device });
      expect(session.deviceQueue).toBe(devQueue);

      // Device requests of the session go to the device: its capability file lists the bundle only it has.
      const { fd } = await session.getLocalCapabilities();
      const caps = JSON.parse(readFileSync(fd, 'utf8')) as { bundleInfos: Array<{ name: string }> };
      closeSync(fd);
      expect(caps.bundleInfos.map((b) => b.name).sort()).toEqual([...SHARED, ONLY_ON_DEVICE].sort());
      await set.writeJson(SET_CAPABILITIES, caps);
      expect(await session.getCompatibilityInfo(ONLY_ON_DEVICE, '')).toBe('compatible-here');

      const names = [...SHARED, ONLY_ON_DEVICE];
      await session.appendBundles(names);
      // The size scan the session workflow runs itself, on the device's queue: the plain worker lacks this bundle (-1).
      await session.getBackupDataSize(true, [{ bundleName: ONLY_ON_DEVICE, lastIncrementalTime: 0 }]);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await rec.until((c) => c.some((x) => x.cb === 'onBackupSizeReport' && JSON.parse(x.payload!).scanning === ''));
      await set.flush();
      await session.release();

      const scaned = rec.calls
        .filter((c) => c.cb === 'onBackupSizeReport')
        .flatMap((c) => (JSON.parse(c.payload!) as { scaned: Array<{ name: string; dataSize: number }> }).scaned);
      expect(scaned).toEqual([expect.objectContaining({ name: ONLY_ON_DEVICE, dataSize: 4321 })]);
      for (const name of names) {
        expect(rec.of(name).find((c) => c.cb === 'onBundleEnd')?.code, name).toBeUndefined();
        expect(await compareBundleSet(set.dir, deviceRoot, name)).toEqual([]);
      }

      // The session workflow ran on the ordinary queue, on the plain worker; its own activities on the device's.
      const sessionTasks = await workflowTaskWorkers(client, session.sessionId);
      expect(sessionTasks.taskQueue).toBe(taskQueue);
      expect(sessionTasks.identities).toEqual(new Set([plainId]));
      // (The bundle claims, 13500013, touch no file: they may run on any worker of the session's queue.)
      const sessionActs = (await activityRuns(client, session.sessionId)).filter((r) => !['claimBundles', 'releaseBundleClaims'].includes(r.activity));
      expect(sessionActs.map((r) => r.activity).sort()).toEqual(['cleanSessionTemp', 'prepareBundles', 'scanBackupSize']);
      for (const r of sessionActs) expect(r).toMatchObject({ taskQueue: devQueue, identity: deviceId });
      // Each bundle child, and every activity it ran, on the device's worker.
      for (const name of names) {
        const child = bundleWorkflowId(session.sessionId, name);
        const tasks = await workflowTaskWorkers(client, child);
        expect(tasks.taskQueue).toBe(devQueue);
        expect(tasks.identities).toEqual(new Set([deviceId]));
        // (Local activities, such as a bundle's check before it begins, run in those workflow tasks.)
        const runs = await activityRuns(client, child);
        expect(runs.map((r) => r.activity)).toEqual(expect.arrayContaining(['packBundleData']));
        for (const r of runs) expect(r).toMatchObject({ taskQueue: devQueue, identity: deviceId });
      }

      // The module's device requests follow `configure({ device })`.
      backup.configure({ address: temporalAddress(), taskQueue, device });
      expect(await backup.getBackupInfo(ONLY_ON_DEVICE)).toBe('{"on":"device"}');

      // A restore naming the device writes onto the device (restore targets made there), never onto the plain worker's data.
      const lost = path.join(deviceRoot, SHARED[1]!, 'data', 'a.txt');
      await rm(lost);
      const restored = await restoreFromSet({ from: set.dir, bundles: [SHARED[1]!], session: { taskQueue, device } });
      expect(restored.bundles).toEqual([expect.objectContaining({ bundleName: SHARED[1], state: 'done' })]);
      expect(await readFile(lost, 'utf8')).toBe(`device ${SHARED[1]}`);
      expect(await compareBundleSet(set.dir, deviceRoot, SHARED[1]!)).toEqual([]);
      expect(await readFile(path.join(plainRoot, SHARED[1]!, 'data', 'decoy.txt'), 'utf8')).toBe(`decoy ${SHARED[1]}`);
      const restoreTasks = await workflowTaskWorkers(client, restored.sessionId);
      expect(restoreTasks.identities).toEqual(new Set([plainId]));
      const restoreActs = (await activityRuns(client, restored.sessionId)).filter((r) => !['claimBundles', 'releaseBundleClaims'].includes(r.activity));
      expect(restoreActs.filter((r) => r.activity === 'createRestoreTarget').length).toBeGreaterThan(0);
      for (const r of restoreActs) expect(r).toMatchObject({ taskQueue: devQueue, identity: deviceId });

      // The command line: `backup --device` and `restore --device`; with no worker for a device, a clear failure.
      const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: path.join(root, 'cli-state') };
      const out = path.join(root, 'cli-set');
      const cliBackup = await ohbackup(['backup', '--device', device, '--out', out, '--json', ONLY_ON_DEVICE], env);
      expect(cliBackup.code, cliBackup.stderr).toBe(0);
      const cliResult = jsonSummary<{ sessionId: string; bundles: Array<{ state: string }> }>(cliBackup.stdout, 'backup');
      expect(cliResult.bundles.map((b) => b.state)).toEqual(['done']);
      expect(await compareBundleSet(out, deviceRoot, ONLY_ON_DEVICE)).toEqual([]);
      expect((await workflowTaskWorkers(client, bundleWorkflowId(cliResult.sessionId, ONLY_ON_DEVICE))).identities).toEqual(new Set([deviceId]));
      // The device still holds the bundle's data: replacing it takes --force. Under --json a refusal is on stdout.
      const cliRestore = await ohbackup(['restore', '--device', device, '--from', out, '--force', '--json'], env);
      expect(cliRestore.code, cliRestore.stdout + cliRestore.stderr).toBe(0);
      expect(jsonSummary<{ bundles: Array<{ state: string }> }>(cliRestore.stdout, 'restore').bundles.map((b) => b.state)).toEqual(['done']);
      const nobody = await ohbackup(['backup', '--device', 'no-such-device', '--out', path.join(root, 'none')], env);
      expect(nobody.code).toBe(1);
      expect(nobody.stderr).toContain('No ohbackup worker serves device "no-such-device"');
      const both = await ohbackup(['restore', '--device', device, '--to', path.join(root, 'x'), '--from', out], env);
      expect(both.code).toBe(2);
    } finally {
      configureTool(taskQueue);
      await Promise.all([plain.kill('SIGTERM'), onDevice.kill('SIGTERM')]);
      await client.connection.close();
    }
  });

  it('refuses a device ID that cannot name a task queue', () => {
    expect(() => new backup.SessionBackup(new Recorder().callbacks, { device: 'no spaces' })).toThrow(expect.objectContaining({ code: 401 }));
    expect(() => backup.configure({ device: '../x' })).toThrow(expect.objectContaining({ code: 401 }));
    expect(() => deviceTaskQueue('')).toThrow(/not a device ID/);
  });
});
