/**
 * Two real worker processes on one dev server, one task queue and one data
 * root: they share a session's bundle work, and when either is killed with
 * SIGKILL mid-session the other finishes it with every file intact.
 *
 * Each worker runs one activity at a time (OHBACKUP_MAX_ACTIVITIES=1) and each
 * bundle's onBackup hook waits for its own gate file, so which worker holds
 * what is decided by the workers, seen through Temporal (pending activities,
 * histories), and never by timing.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { bundleWorkflowId } from '../../common/session.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { activityRuns, pendingActivities, processIdentity, watch } from '../helpers/history.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/workerProcess.js';

const BUNDLES = ['com.example.w1', 'com.example.w2', 'com.example.w3', 'com.example.w4'];
const BUNDLE_ACTIVITIES = ['prepareBundle', 'runBundleHook', 'packBundleData', 'handOverFiles'];

interface GatedDevice {
  dataRoot: string;
  stateDir: string;
  root: string;
  open(bundles: string[]): Promise<void>;
}

/** Bundles of small and big files whose onBackup hook waits until the test opens the bundle's gate. */
async function gatedDevice(name: string): Promise<GatedDevice> {
  const root = await mkdtemp(path.join(os.tmpdir(), `ohbackup-${name}-`));
  const dataRoot = path.join(root, 'device');
  const gates = path.join(root, 'gates');
  await mkdir(gates);
  for (const [i, b] of BUNDLES.entries()) {
    await writeBundle(dataRoot, {
      name: b,
      files: { 'notes.txt': `notes of ${b}`, 'sub/deep/x.json': JSON.stringify({ i }), ...bigFiles(2, `big${i}-`) },
      hooks: { onBackup: `while [ ! -e '${path.join(gates, b)}' ]; do sleep 0.05; done` },
    });
  }
  return {
    root,
    dataRoot,
    stateDir: path.join(root, 'state'),
    async open(bundles) {
      for (const b of bundles) await writeFile(path.join(gates, b), '');
    },
  };
}

/** Two worker processes for the device, one activity at a time each. */
async function twoWorkers(taskQueue: string, dev: GatedDevice): Promise<WorkerProcess[]> {
  return Promise.all(
    [0, 1].map(() => startWorkerProcess({ taskQueue, dataRoot: dev.dataRoot, stateDir: dev.stateDir, env: { OHBACKUP_MAX_ACTIVITIES: '1' } })),
  );
}

/** Waits until each worker runs a bundle's hook (blocked on its gate); returns the bundle each one holds. */
async function eachInAHook(client: Client, sessionId: string, identities: string[]): Promise<Map<string, string>> {
  const children = BUNDLES.map((b) => bundleWorkflowId(sessionId, b));
  return watch(async () => {
    const hooks = (await pendingActivities(client, children)).filter((p) => p.activity === 'runBundleHook' && p.started);
    const held = new Map(hooks.map((h) => [h.identity, h.workflowId.slice(sessionId.length + 1)]));
    return identities.every((id) => held.has(id)) && held;
  });
}

async function openSession(root: string) {
  const set = new BackupSetWriter(path.join(root, 'set'));
  await set.init();
  const rec = new Recorder(set);
  // Two bundles at once: each worker holds one; the others wait for a bundle to end, not for a worker's only slot.
  const session = new backup.SessionBackup(rec.callbacks, { maxConcurrentBundles: 2 });
  await session.appendBundles(BUNDLES);
  return { set, rec, session };
}

async function expectEveryFileOnce(rec: Recorder, setDir: string, dataRoot: string): Promise<void> {
  for (const name of BUNDLES) {
    expect(rec.of(name).find((c) => c.cb === 'onBundleEnd')?.code, name).toBeUndefined();
    const uris = rec
      .of(name)
      .filter((c) => c.cb === 'onFileReady')
      .map((c) => c.uri);
    expect(new Set(uris).size, `${name}: a file handed over twice`).toBe(uris.length);
    expect(await compareBundleSet(setDir, dataRoot, name)).toEqual([]);
  }
}

describe('two worker processes on one task queue', () => {
  it('share the bundle work of a session', async () => {
    const dev = await gatedDevice('share');
    const taskQueue = uniqueTaskQueue('two');
    configureTool(taskQueue);
    const workers = await twoWorkers(taskQueue, dev);
    const ids = workers.map((w) => processIdentity(w.child.pid));
    const client = await testClient();
    try {
      const { set, rec, session } = await openSession(dev.root);
      // Each worker can hold one activity: both end up in a bundle's hook.
      const held = await eachInAHook(client, session.sessionId, ids);
      expect(new Set(held.values()).size).toBe(2);
      await dev.open(BUNDLES);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await set.flush();
      await session.release();
      await expectEveryFileOnce(rec, set.dir, dev.dataRoot);

      // The histories say who ran each bundle's activities: both workers did bundle work, and nobody else.
      const runs = (await Promise.all(BUNDLES.map((b) => activityRuns(client, bundleWorkflowId(session.sessionId, b))))).flat();
      const bundleWork = runs.filter((r) => BUNDLE_ACTIVITIES.includes(r.activity));
      // Hook and pack-and-hand-over at least, per bundle (prepareBundle runs as a local activity).
      expect(bundleWork.length).toBeGreaterThanOrEqual(BUNDLES.length * 2);
      expect(new Set(bundleWork.map((r) => r.identity))).toEqual(new Set(ids));
      for (const [id, bundle] of held) {
        expect(runs.find((r) => r.workflowId === bundleWorkflowId(session.sessionId, bundle) && r.activity === 'runBundleHook')?.identity).toBe(id);
      }
    } finally {
      await dev.open(BUNDLES);
      await Promise.all(workers.map((w) => w.kill('SIGKILL')));
      await client.connection.close();
    }
  });

  it.each([
    ['the first', 0],
    ['the second', 1],
  ])('finish the session on one when %s is killed mid-session', async (_label, victimIndex) => {
    const dev = await gatedDevice(`die${victimIndex}`);
    const taskQueue = uniqueTaskQueue('die');
    configureTool(taskQueue);
    const workers = await twoWorkers(taskQueue, dev);
    const ids = workers.map((w) => processIdentity(w.child.pid));
    const victim = workers[victimIndex]!;
    const victimId = ids[victimIndex]!;
    const survivorId = ids[1 - victimIndex]!;
    const client = await testClient();
    try {
      const { set, rec, session } = await openSession(dev.root);
      const held = await eachInAHook(client, session.sessionId, ids);
      const survivorBundle = held.get(survivorId)!;
      const victimBundle = held.get(victimId)!;
      // The survivor's bundle goes on and hands files over; the victim stays in its hook (its gate is shut) ...
      await dev.open([survivorBundle]);
      await rec.until((c) => c.some((x) => x.cb === 'onFileReady' && x.bundleName === survivorBundle));
      // ... and dies there, mid-session, holding that hook's activity.
      await victim.kill('SIGKILL');
      await dev.open(BUNDLES);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await set.flush();
      await session.release();
      await expectEveryFileOnce(rec, set.dir, dev.dataRoot);

      // The victim's hook was retried on the survivor, which did every bundle's remaining work.
      const runs = (await Promise.all(BUNDLES.map((b) => activityRuns(client, bundleWorkflowId(session.sessionId, b))))).flat();
      const retried = runs.find((r) => r.workflowId === bundleWorkflowId(session.sessionId, victimBundle) && r.activity === 'runBundleHook');
      expect(retried).toMatchObject({ identity: survivorId });
      expect(retried!.attempt).toBeGreaterThan(1);
      expect(retried!.lastFailure).toMatch(/heartbeat|timeout/i);
      // Past the first two bundles' prepareBundle, the victim's only slot was held by that hook until its death: all else ran on the survivor.
      const firstTwo = [victimBundle, survivorBundle].map((x) => bundleWorkflowId(session.sessionId, x));
      const others = runs.filter((r) => !(firstTwo.includes(r.workflowId) && r.activity === 'prepareBundle'));
      expect(new Set(others.map((r) => r.identity))).toEqual(new Set([survivorId]));
    } finally {
      await dev.open(BUNDLES);
      await Promise.all(workers.map((w) => w.kill('SIGKILL')));
      await client.connection.close();
    }
  });
});
