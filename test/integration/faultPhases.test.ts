/**
 * A real worker process killed with SIGKILL inside each phase of a backup —
 * the size scan, packing, hand-over, a hook (unpacking a restore:
 * faultPhasesRestore.test.ts) —
 * caught there by events (a FIFO the phase reads, a file it creates, the first
 * file handed over), confirmed with describe() while it is stopped, then
 * restarted. Every session completes, every file verifies, and no callback
 * comes twice.
 */
import { mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { bundleWorkflowId } from '../../common/session.js';
import { updateSendRateSignal } from '../../common/messages.js';
import { bigFiles, writeBundle, type TestBundle } from '../helpers/device.js';
import { fifoGate, lowestPriority, pendingActivities, stopWhenCreated } from '../helpers/phaseGates.js';
import { groupMembers } from '../helpers/processes.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/workerProcess.js';

const A = 'com.phase.scan.a';
const B = 'com.phase.scan.b';
const P = 'com.phase.pack.p';
const Q = 'com.phase.pack.q';
const H = 'com.phase.handover.h';
const K = 'com.phase.hook.k';
const O = 'com.phase.hook.other';

function smallFiles(prefix: string, n: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[`${prefix}/n${i}.txt`] = `${prefix} ${i}\n`.repeat(i + 1);
  return out;
}

/** One device for every test (each has its own bundles), served by one worker process at a time. */
const BUNDLES: TestBundle[] = [
  { name: A, files: { ...smallFiles('a', 20), 'x.bin': Buffer.alloc(70_000, 1) } },
  { name: B, files: smallFiles('b', 10) },
  { name: P, files: { ...bigFiles(24, 'media'), ...smallFiles('notes', 40) } },
  { name: Q, files: smallFiles('q', 10) },
  // The hooks wait on a FIFO the test holds (`gate`); K's records its process group first.
  { name: H, files: { ...bigFiles(6, 'media'), ...smallFiles('notes', 20) }, hooks: { onBackup: 'cat gate > /dev/null' } },
  { name: K, files: smallFiles('k', 10), hooks: { onBackup: 'echo $$ > hook.pid; cat gate > /dev/null; echo hooked' } },
  { name: O, files: smallFiles('o', 10) },
];

let root: string;
let client: Client;
const device = {
  dataRoot: '',
  stateDir: '',
  taskQueue: '',
  worker: undefined as unknown as WorkerProcess,
  /** Kills the (stopped or running) worker and starts a new one. */
  async replaceWorker(env?: Record<string, string>): Promise<void> {
    await device.worker.kill('SIGKILL');
    device.worker = await startWorkerProcess({
      taskQueue: device.taskQueue,
      dataRoot: device.dataRoot,
      stateDir: device.stateDir,
      env,
      prebuiltWorkflows: true,
    });
  },
};
let sessions = 0;
const nextSessionId = () => `ohbackup-phase-${path.basename(root)}-${++sessions}`;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-phases-'));
  client = await testClient();
  device.dataRoot = path.join(root, 'device');
  device.stateDir = path.join(root, 'state');
  device.taskQueue = uniqueTaskQueue('phases');
  for (const b of BUNDLES) await writeBundle(device.dataRoot, b);
  for (const b of [H, K]) execFileSync('mkfifo', [path.join(device.dataRoot, b, 'gate')]);
  device.worker = await startWorkerProcess({ taskQueue: device.taskQueue, dataRoot: device.dataRoot, stateDir: device.stateDir, prebuiltWorkflows: true });
});

beforeEach(() => configureTool(device.taskQueue));

afterAll(async () => {
  // SIGKILL: a worker a failed test left stopped (SIGSTOP) would never act on SIGTERM.
  await device.worker?.kill('SIGKILL');
  await client?.connection.close();
  await rm(root, { recursive: true, force: true });
});

async function recorder() {
  const set = new BackupSetWriter(path.join(root, `set-${sessions}`));
  await set.init();
  return { set, rec: new Recorder(set) };
}

/** Each bundle began, reported and ended once, without error; its files came once each and match the device. */
async function expectCompleteOnce(rec: Recorder, set: BackupSetWriter, names: string[]) {
  for (const name of names) {
    const mine = rec.of(name);
    for (const cb of ['onBundleBegin', 'onResultReport', 'onBundleEnd'] as const) expect(mine.filter((c) => c.cb === cb).length, `${name}: ${cb}`).toBe(1);
    expect(mine.find((c) => c.cb === 'onBundleEnd')?.code, `${name} ended with an error: ${mine.find((c) => c.cb === 'onBundleEnd')?.message}`).toBeUndefined();
    const uris = mine.filter((c) => c.cb === 'onFileReady').map((c) => c.uri);
    expect(new Set(uris).size, `${name}: a file handed over twice`).toBe(uris.length);
    expect(await compareBundleSet(set.dir, device.dataRoot, name)).toEqual([]);
  }
  expect(rec.count('onAllBundlesEnd')).toBe(1);
}

/** Bytes of the files in a bundle's data folder. */
async function dataSize(bundle: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(path.join(device.dataRoot, bundle, 'data'), { recursive: true, withFileTypes: true })) {
    if (f.isFile()) n += (await stat(path.join(f.parentPath, f.name))).size;
  }
  return n;
}

async function finish(session: InstanceType<typeof backup.SessionBackup>, rec: Recorder, set: BackupSetWriter) {
  await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
  await set.flush();
  await session.release();
}

describe('a worker killed inside each phase', () => {
  it('scan (getBackupDataSize): the retried scan reports every bundle once, then the backup completes', async () => {
    // The scan blocks reading A's profile; it reaches it after B.
    const gate = await fifoGate(path.join(device.dataRoot, A, 'backup_config.json'));
    const sessionId = nextSessionId();
    const { set, rec } = await recorder();
    const session = new backup.SessionBackup(rec.callbacks, { sessionId });
    try {
      await session.getBackupDataSize(true, [
        { bundleName: B, lastIncrementalTime: 0 },
        { bundleName: A, lastIncrementalTime: 0 },
      ]);
      const writer = await gate.reader();
      expect(await pendingActivities(client, sessionId)).toContain('scanBackupSize');
      await device.worker.kill('SIGKILL');
      await writer.close();
      await gate.open();
      await device.replaceWorker();
      // The scan is retried once its heartbeat times out.
      await rec.until((c) => c.some((x) => x.cb === 'onBackupSizeReport' && JSON.parse(x.payload!).scanning === ''));
      const scanned = rec.calls
        .filter((c) => c.cb === 'onBackupSizeReport')
        .flatMap((c) => (JSON.parse(c.payload!) as { scaned: Array<{ name: string; dataSize: number }> }).scaned);
      expect(scanned.map((x) => x.name).sort()).toEqual([A, B]);
      for (const x of scanned) expect(x.dataSize, x.name).toBe(await dataSize(x.name));

      await session.appendBundles([A, B]);
      await finish(session, rec, set);
      await expectCompleteOnce(rec, set, [A, B]);
    } finally {
      await gate.open();
    }
  });

  it('pack: killed after a first output is complete, the retry keeps it and the set is whole', async () => {
    const sessionId = nextSessionId();
    const packDir = path.join(device.dataRoot, P, 'backup', 'backup', sessionId);
    await mkdir(packDir, { recursive: true });
    // Lowest priority: the worker packs slowly next to the test, which stops it the moment it completes an output.
    const pid = device.worker.child.pid!;
    lowestPriority(pid);
    const gate = stopWhenCreated(packDir, (n) => n.endsWith('.done.json'), pid);
    const { set, rec } = await recorder();
    const session = new backup.SessionBackup(rec.callbacks, { sessionId });
    try {
      await session.appendBundles([P, Q]);
      await gate.stopped;
      expect(await pendingActivities(client, bundleWorkflowId(sessionId, P))).toEqual(['packBundleData']);
      expect(existsSync(path.join(packDir, 'manage.json')), 'the pack had finished').toBe(false);
      await device.replaceWorker({ OHBACKUP_LOG_LEVEL: 'INFO' });
      await finish(session, rec, set);
      await expectCompleteOnce(rec, set, [P, Q]);
      // The retried attempt used what the killed one completed (a slice kept, or a big file reused).
      const resumedP = device.worker
        .output()
        .split('packBundleData resumed')
        .find((s) => s.split('\n')[0]!.includes(`workflowId=${bundleWorkflowId(sessionId, P)}`));
      expect(resumedP?.split('\n')[0]).toMatch(/\b(kept|reused)=[1-9]/);
    } finally {
      gate.cancel();
    }
  });

  it('hand-over: killed with files still to go, the retry hands over the rest, none twice', async () => {
    const sessionId = nextSessionId();
    const { set, rec } = await recorder();
    let stopped!: () => void;
    const atFirstFile = new Promise<void>((resolve) => (stopped = resolve));
    const pid = device.worker.child.pid!;
    const callbacks: typeof rec.callbacks = {
      ...rec.callbacks,
      onFileReady: (err, file) => {
        if (rec.count('onFileReady') === 0) {
          process.kill(pid, 'SIGSTOP');
          stopped();
        }
        rec.callbacks.onFileReady(err, file);
      },
    };
    const session = new backup.SessionBackup(callbacks, { sessionId });
    await session.appendBundles([H]);
    // H's hook holds the bundle until its send rate is set: one file a second, so the hand-over lasts.
    const writer = await open(path.join(device.dataRoot, H, 'gate'), 'w');
    await client.workflow.getHandle(bundleWorkflowId(sessionId, H)).signal(updateSendRateSignal, 1);
    await writer.close();
    await atFirstFile;
    // One activity packs and hands over: by its first file it is handing over.
    expect(await pendingActivities(client, bundleWorkflowId(sessionId, H))).toEqual(['packBundleData']);
    await device.replaceWorker();
    await client.workflow.getHandle(bundleWorkflowId(sessionId, H)).signal(updateSendRateSignal, 100); // the rest quickly
    await finish(session, rec, set);
    await expectCompleteOnce(rec, set, [H]);
  });

  it('hook (onBackup): the hook dies with the worker (its process group is gone), runs again, and the backup completes', async () => {
    const sessionId = nextSessionId();
    const gatePath = path.join(device.dataRoot, K, 'gate');
    const { set, rec } = await recorder();
    const session = new backup.SessionBackup(rec.callbacks, { sessionId });
    await session.appendBundles([K, O]);
    const writer = await open(gatePath, 'w'); // returns once the hook is reading it
    const pgid = Number(await readFile(path.join(device.dataRoot, K, 'hook.pid'), 'utf8'));
    expect(groupMembers(pgid).length).toBeGreaterThan(0);
    expect(await pendingActivities(client, bundleWorkflowId(sessionId, K))).toEqual(['runBundleHook']);
    await device.worker.kill('SIGKILL');
    // Nothing of the hook outlives the worker that ran it (it still waits on the gate: it did not just finish).
    for (let i = 0; i < 500 && groupMembers(pgid).length > 0; i++) await new Promise((res) => setTimeout(res, 20));
    expect(groupMembers(pgid)).toEqual([]);
    await writer.close();
    await writeFile(`${gatePath}.tmp`, '');
    await rename(`${gatePath}.tmp`, gatePath); // the retried hook reads a plain file
    await device.replaceWorker();
    await finish(session, rec, set);
    await expectCompleteOnce(rec, set, [K, O]);
    expect(rec.of(K).find((c) => c.cb === 'onResultReport')?.payload).toBe('hooked');
  });
});
