/**
 * A real worker process killed with SIGKILL inside the phases of a restore —
 * unpacking (verify, build the new tree) and the bundle's onRestore hook —
 * caught there by events and confirmed with describe() while it is stopped
 * or blocked, then restarted. The restore completes, the data is the source's,
 * it was untouched until the swap, and no callback comes twice. (The backup
 * phases: faultPhases.test.ts.)
 */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { runBackup } from '../../client/runs/runBackup.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { bundleWorkflowId } from '../../common/session.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { compareTrees } from '../helpers/compareTrees.js';
import { lowestPriority, pendingActivities, stopWhenCreated } from '../helpers/phaseGates.js';
import { groupMembers } from '../helpers/processes.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/workerProcess.js';

const U = 'com.phase.unpack.u';
const R = 'com.phase.restorehook.r';

let root: string;
let client: Client;
let source: string;
let setDir: string;
const device = {
  dataRoot: '',
  stateDir: '',
  taskQueue: '',
  worker: undefined as unknown as WorkerProcess,
  async replaceWorker(): Promise<void> {
    await device.worker.kill('SIGKILL');
    device.worker = await startWorkerProcess({ taskQueue: device.taskQueue, dataRoot: device.dataRoot, stateDir: device.stateDir, prebuiltWorkflows: true });
  },
};
let sessions = 0;

function notes(n: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[`notes/n${i}.txt`] = `note ${i}\n`.repeat(i + 1);
  return out;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-phases-restore-'));
  client = await testClient();
  // The set: from a source device, backed up by an in-process worker.
  source = path.join(root, 'source');
  await writeBundle(source, { name: U, files: { ...bigFiles(24, 'media'), ...notes(40) } });
  await writeBundle(source, { name: R, files: notes(10) });
  setDir = path.join(root, 'set');
  const backupQueue = uniqueTaskQueue('phases-set');
  configureTool(backupQueue);
  await withWorker({ taskQueue: backupQueue, dataRoot: source, stateDir: path.join(root, 'source-state') }, async () => {
    const b = await runBackup({ out: setDir, bundles: [U, R] });
    expect(b.outcome, JSON.stringify(b.bundles)).toBe('done');
  });
  // The target device holds older data for both; R restores with a hook that waits on a FIFO the test holds.
  device.dataRoot = path.join(root, 'device');
  device.stateDir = path.join(root, 'state');
  device.taskQueue = uniqueTaskQueue('phases-restore');
  await writeBundle(device.dataRoot, { name: U, files: { 'old.txt': 'old' } });
  await writeBundle(device.dataRoot, {
    name: R,
    files: { 'old.txt': 'old' },
    hooks: { onRestore: 'echo $$ > hook.pid; cat gate > /dev/null; echo restore-hooked' },
  });
  execFileSync('mkfifo', [path.join(device.dataRoot, R, 'gate')]);
  device.worker = await startWorkerProcess({ taskQueue: device.taskQueue, dataRoot: device.dataRoot, stateDir: device.stateDir, prebuiltWorkflows: true });
  configureTool(device.taskQueue);
});

afterAll(async () => {
  await device.worker?.kill('SIGKILL'); // a worker a failed test left stopped never acts on SIGTERM
  await client?.connection.close();
  await rm(root, { recursive: true, force: true });
});

function expectOnce(rec: Recorder, bundle: string) {
  for (const cb of ['onBundleBegin', 'onResultReport', 'onBundleEnd', 'onAllBundlesEnd'] as const) expect(rec.count(cb), cb).toBe(1);
  const uris = rec
    .of(bundle)
    .filter((c) => c.cb === 'onFileReady')
    .map((c) => c.uri);
  expect(new Set(uris).size, 'a target handed out twice').toBe(uris.length);
}

describe('a worker killed inside a restore', () => {
  it('unpack: killed while the new tree is being built, the data is untouched until the retry applies it', async () => {
    const sessionId = `ohbackup-phase-restore-${path.basename(root)}-${++sessions}`;
    const work = path.join(device.dataRoot, U, 'backup', 'restore', sessionId);
    await mkdir(work, { recursive: true });
    // Lowest priority: the worker unpacks slowly next to the test, which stops it the moment the staging tree appears.
    const pid = device.worker.child.pid!;
    lowestPriority(pid);
    const gate = stopWhenCreated(work, (n) => n === 'staging', pid);
    const rec = new Recorder(undefined, { observer: true });
    try {
      const restoring = restoreFromSet({ from: setDir, bundles: [U], session: { sessionId }, observe: rec.callbacks });
      await gate.stopped;
      expect(await pendingActivities(client, bundleWorkflowId(sessionId, U))).toEqual(['applyRestoreData']);
      expect(await readdir(path.join(device.dataRoot, U, 'data'))).toEqual(['old.txt']);
      await device.replaceWorker();
      const result = await restoring;
      expect(result.bundles.map((b) => [b.bundleName, b.state, b.error?.message])).toEqual([[U, 'done', undefined]]);
      expect(await compareTrees(path.join(source, U, 'data'), path.join(device.dataRoot, U, 'data'))).toEqual([]);
      expectOnce(rec, U);
    } finally {
      gate.cancel();
    }
  });

  it('swap: killed once the new tree is swapped in (its big files moved out of the restore files), the retry finds it applied', async () => {
    const sessionId = `ohbackup-phase-restore-${path.basename(root)}-${++sessions}`;
    const bundleDir = path.join(device.dataRoot, U);
    const work = path.join(bundleDir, 'backup', 'restore', sessionId);
    const before = statSync(path.join(bundleDir, 'data')).ino;
    const pid = device.worker.child.pid!;
    lowestPriority(pid);
    // Stopped the moment data/ is another folder: the staging tree renamed into place, the activity not yet done.
    const swapped = (n: string) => {
      if (n !== 'data') return false;
      try {
        return statSync(path.join(bundleDir, n)).ino !== before;
      } catch {
        return false;
      }
    };
    const gate = stopWhenCreated(bundleDir, swapped, pid);
    const rec = new Recorder(undefined, { observer: true });
    try {
      const restoring = restoreFromSet({ from: setDir, bundles: [U], session: { sessionId }, observe: rec.callbacks });
      await gate.stopped;
      expect(await pendingActivities(client, bundleWorkflowId(sessionId, U))).toEqual(['applyRestoreData']);
      // The apply has consumed the received big files: they now live in data/.
      const left = await readdir(path.join(work, 'files'));
      expect(left.filter((n) => n.startsWith('file.'))).toEqual([]);
      await device.replaceWorker();
      const result = await restoring;
      expect(result.bundles.map((b) => [b.bundleName, b.state, b.error?.message])).toEqual([[U, 'done', undefined]]);
      expect(await compareTrees(path.join(source, U, 'data'), path.join(bundleDir, 'data'))).toEqual([]);
      expectOnce(rec, U);
      // Nothing left behind: the session's restore folder, the staging tree, an old tree.
      expect((await readdir(bundleDir)).filter((n) => n.startsWith('data.'))).toEqual([]);
      expect(await readdir(path.join(bundleDir, 'backup', 'restore'))).not.toContain(sessionId);
    } finally {
      gate.cancel();
    }
  });

  it('onRestore hook: the hook dies with the worker (its process group is gone), runs again, and the restore completes', async () => {
    const sessionId = `ohbackup-phase-restore-${path.basename(root)}-${++sessions}`;
    const gatePath = path.join(device.dataRoot, R, 'gate');
    const rec = new Recorder(undefined, { observer: true });
    const restoring = restoreFromSet({ from: setDir, bundles: [R], session: { sessionId }, observe: rec.callbacks });
    const writer = await open(gatePath, 'w'); // returns once the hook is reading it: the data is applied
    const pgid = Number(await readFile(path.join(device.dataRoot, R, 'hook.pid'), 'utf8'));
    expect(groupMembers(pgid).length).toBeGreaterThan(0);
    expect(await pendingActivities(client, bundleWorkflowId(sessionId, R))).toEqual(['runBundleHook']);
    await device.worker.kill('SIGKILL');
    for (let i = 0; i < 500 && groupMembers(pgid).length > 0; i++) await new Promise((res) => setTimeout(res, 20));
    expect(groupMembers(pgid)).toEqual([]);
    await writer.close();
    await writeFile(`${gatePath}.tmp`, '');
    await rename(`${gatePath}.tmp`, gatePath); // the retried hook reads a plain file
    await device.replaceWorker();
    const result = await restoring;
    expect(result.bundles.map((b) => [b.bundleName, b.state, b.error?.message])).toEqual([[R, 'done', undefined]]);
    expect(await compareTrees(path.join(source, R, 'data'), path.join(device.dataRoot, R, 'data'))).toEqual([]);
    expectOnce(rec, R);
    expect(rec.of(R).find((c) => c.cb === 'onResultReport')?.payload).toBe('restore-hooked');
  });
});
