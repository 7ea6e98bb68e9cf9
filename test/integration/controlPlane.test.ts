import { startWorkerProcess } from '../helpers/workerProcess.js';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { bundleWorkflowId, type SessionResult } from '../../common/session.js';
import { sendRateQuery } from '../../common/messages.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder, type Recorded } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';

async function freshDevice(prefix: string) {
  const root = await mkdtemp(path.join(os.tmpdir(), `ohbackup-${prefix}-`));
  return { dataRoot: path.join(root, 'device'), stateDir: path.join(root, 'state'), root };
}
const ended = (name: string) => (c: Recorded[]) => c.some((x) => x.cb === 'onBundleEnd' && x.bundleName === name);
const allEnded = (c: Recorded[]) => c.some((x) => x.cb === 'onAllBundlesEnd');
const endCode = (rec: Recorder, name: string) => rec.of(name).find((c) => c.cb === 'onBundleEnd')?.code;

describe('updateTimer', () => {
  it('a bundle whose hook outlasts a 1 s deadline ends with 13500003 while its sibling succeeds; re-arming lets another finish', async () => {
    const d = await freshDevice('timer');
    await writeBundle(d.dataRoot, { name: 'com.t.slow', hooks: { onBackup: 'sleep 30' } });
    await writeBundle(d.dataRoot, { name: 'com.t.rearmed', hooks: { onBackup: 'sleep 2' } });
    await writeBundle(d.dataRoot, { name: 'com.t.quick' });
    const taskQueue = uniqueTaskQueue('timer');
    configureTool(taskQueue);
    const rec = new Recorder();
    const answers: Record<string, boolean[]> = {};
    const cb: typeof rec.callbacks = {
      ...rec.callbacks,
      onBundleBegin: (err, name) => {
        rec.callbacks.onBundleBegin(err, name);
        if (name === 'com.t.quick') return;
        answers[name] = [backup.updateTimer(name, 1000)];
        // Re-armed before the 1 s runs out: the 2 s hook finishes.
        if (name === 'com.t.rearmed') answers[name].push(backup.updateTimer(name, 60_000));
      },
    };
    expect(backup.updateTimer('com.t.slow', 1000)).toBe(false); // not begun yet
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const session = new backup.SessionBackup(cb);
      await session.appendBundles(['com.t.slow', 'com.t.rearmed', 'com.t.quick']);
      await rec.until(allEnded);
      expect(backup.updateTimer('com.t.slow', 1000)).toBe(false); // ended
      await session.release();
    });
    expect(answers).toEqual({ 'com.t.slow': [true], 'com.t.rearmed': [true, true] });
    expect(endCode(rec, 'com.t.slow')).toBe(13500003);
    expect(rec.of('com.t.slow').some((c) => c.cb === 'onFileReady')).toBe(false);
    expect(endCode(rec, 'com.t.rearmed')).toBeUndefined();
    expect(endCode(rec, 'com.t.quick')).toBeUndefined();
  });
});

describe('updateSendRate', () => {
  it('0 holds hand-over durably (no activity running) until a new rate; then every file arrives; > 800 is clamped', async () => {
    const d = await freshDevice('rate');
    // The hook holds the bundle until the test has set the rate to 0.
    const root = await writeBundle(d.dataRoot, { name: 'com.r.paused', files: bigFiles(4), hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    const taskQueue = uniqueTaskQueue('rate');
    configureTool(taskQueue);
    const set = new BackupSetWriter(path.join(d.root, 'set'));
    await set.init();
    const rec = new Recorder(set);
    const client = await testClient();
    const cb: typeof rec.callbacks = {
      ...rec.callbacks,
      onBundleBegin: (err, name) => {
        rec.callbacks.onBundleBegin(err, name);
        expect(backup.updateSendRate(name, 0)).toBe(true);
        void writeFile(path.join(root, 'go'), '');
      },
    };
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const session = new backup.SessionBackup(cb);
      await session.appendBundles(['com.r.paused']);
      // The workflow reports the pause (every 5 s) once packing is done and nothing is being handed over.
      await rec.until((c) => c.some((x) => x.cb === 'onProcess' && x.payload!.includes('paused at 0/')));
      expect(rec.of('com.r.paused').filter((c) => c.cb === 'onFileReady')).toHaveLength(0);
      const child = client.workflow.getHandle(bundleWorkflowId(session.sessionId, 'com.r.paused'));
      expect((await child.describe()).raw.pendingActivities ?? []).toHaveLength(0);
      expect(await child.query(sendRateQuery)).toBe(0);

      expect(() => backup.updateSendRate('com.r.paused', -1)).toThrow(expect.objectContaining({ code: 401 }));
      expect(backup.updateSendRate('com.r.paused', 5000)).toBe(true);
      await rec.until(ended('com.r.paused'));
      expect(await child.query(sendRateQuery)).toBe(800);
      await set.flush();
      await session.release();
    });
    await client.connection.close();
    expect(endCode(rec, 'com.r.paused')).toBeUndefined();
    expect(await compareBundleSet(set.dir, d.dataRoot, 'com.r.paused')).toEqual([]);
  });

  it('a session started with sendRate 0 holds every bundle from its first file, without a signal; a rate set then lets it finish', async () => {
    const d = await freshDevice('rate-option');
    await writeBundle(d.dataRoot, { name: 'com.r.option', files: { 'a.txt': 'a', 'b.txt': 'b' } });
    const taskQueue = uniqueTaskQueue('rate-option');
    configureTool(taskQueue);
    const rec = new Recorder();
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const session = new backup.SessionBackup(rec.callbacks, { sendRate: 0 });
      await session.appendBundles(['com.r.option']);
      await rec.until((c) => c.some((x) => x.cb === 'onProcess' && x.payload!.includes('paused at 0/')));
      const child = client.workflow.getHandle(bundleWorkflowId(session.sessionId, 'com.r.option'));
      expect(await child.query(sendRateQuery)).toBe(0);
      const signals = (await child.fetchHistory()).events!.filter((e) => e.workflowExecutionSignaledEventAttributes);
      expect(signals).toHaveLength(0);
      expect(backup.updateSendRate('com.r.option', 800)).toBe(true);
      await rec.until(ended('com.r.option'));
      await session.release();
    });
    await client.connection.close();
    expect(endCode(rec, 'com.r.option')).toBeUndefined();
    expect(rec.of('com.r.option').filter((c) => c.cb === 'onFileReady').length).toBeGreaterThan(0);
  });

  it('a rate set in onBundleBegin reaches the bundle before its first file is handed over, even from a slow tool and a bundle that packs at once', async () => {
    const d = await freshDevice('rate-begin');
    // Small files, no hook: packing takes milliseconds, so without the wait for the tool the default 60/s would win.
    await writeBundle(d.dataRoot, { name: 'com.r.quick', files: { 'a.txt': 'a', 'b.txt': 'b', 'c.txt': 'c' } });
    const taskQueue = uniqueTaskQueue('rate-begin');
    configureTool(taskQueue);
    const rec = new Recorder();
    const client = await testClient();
    const cb: typeof rec.callbacks = {
      ...rec.callbacks,
      onBundleBegin: (err, name) => {
        rec.callbacks.onBundleBegin(err, name);
        // A tool that takes its time in onBundleBegin (half a second, blocking) before it sets the rate.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
        backup.updateSendRate(name, 7);
      },
      onFileReady: (err, file) => {
        readyAts.push(file.readyAt ?? 0);
        rec.callbacks.onFileReady(err, file);
      },
    };
    const readyAts: number[] = [];
    let history: Awaited<ReturnType<ReturnType<typeof client.workflow.getHandle>['fetchHistory']>> | undefined;
    // A worker process of its own: the tool's blocking onBundleBegin must not hold the worker's activities too.
    const worker = await startWorkerProcess({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir, prebuiltWorkflows: true });
    try {
      const session = new backup.SessionBackup(cb);
      await session.appendBundles(['com.r.quick']);
      await rec.until(ended('com.r.quick'));
      history = await client.workflow.getHandle(bundleWorkflowId(session.sessionId, 'com.r.quick')).fetchHistory();
      await session.release();
    } finally {
      await worker.kill('SIGKILL');
    }
    await client.connection.close();
    expect(endCode(rec, 'com.r.quick')).toBeUndefined();
    expect(rec.of('com.r.quick').filter((c) => c.cb === 'onFileReady').length).toBeGreaterThan(0);
    const events = history!.events ?? [];
    const signalled = (name: string) => events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === name);
    // The rate set in onBundleBegin is the bundle's one signal from the tool (its toolBegun mark is a query), and carries it.
    expect(signalled('toolBegun')).toBe(-1);
    expect(events.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'updateSendRate').length).toBe(1);
    const rateSignal = events[signalled('updateSendRate')]!;
    expect(JSON.parse(Buffer.from(rateSignal.workflowExecutionSignaledEventAttributes!.input!.payloads![0]!.data!).toString('utf8'))).toBe(7);
    // The activity that packs and hands over let its first file go only once that rate had reached the bundle.
    const rateAt = Number(rateSignal.eventTime!.seconds) * 1000 + Math.floor(rateSignal.eventTime!.nanos! / 1e6);
    expect(readyAts.length).toBeGreaterThan(0);
    expect(Math.min(...readyAts)).toBeGreaterThanOrEqual(rateAt);
  });
});

describe('cancel', () => {
  it('answers 0 / 13500011 / 13500012 by state, and the cancelled bundle hands over nothing after its end', async () => {
    const d = await freshDevice('cancel');
    // Its hook waits for a gate the tool opens once it has set the rate: files flow at 1/s from the first.
    const gate = path.join(d.dataRoot, 'gate');
    await writeBundle(d.dataRoot, { name: 'com.c.first', files: bigFiles(5), hooks: { onBackup: `while [ ! -e '${gate}' ]; do sleep 0.05; done` } });
    await writeBundle(d.dataRoot, { name: 'com.c.second' });
    const taskQueue = uniqueTaskQueue('cancel');
    configureTool(taskQueue);
    const rec = new Recorder();
    const codes: number[] = [];
    let session!: InstanceType<typeof backup.SessionBackup>;
    const cb: typeof rec.callbacks = {
      ...rec.callbacks,
      onBundleBegin: (err, name) => {
        rec.callbacks.onBundleBegin(err, name);
        if (name === 'com.c.first') {
          backup.updateSendRate(name, 1);
          void openGateOnceRateIs(1, name);
        }
      },
      onFileReady: (err, file) => {
        rec.callbacks.onFileReady(err, file);
        if (file.bundleName === 'com.c.first' && codes.length === 0) {
          codes.push(session.cancel('com.c.second')); // queued behind first: not started
          codes.push(session.cancel('com.c.first'));
          codes.push(session.cancel('com.c.nothere'));
        }
      },
    };
    const client = await testClient();
    const openGateOnceRateIs = async (rate: number, name: string) => {
      const child = client.workflow.getHandle(bundleWorkflowId(session.sessionId, name));
      while ((await child.query(sendRateQuery)) !== rate) await new Promise((r) => setTimeout(r, 50));
      await writeFile(gate, '');
    };
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      session = new backup.SessionBackup(cb, { maxConcurrentBundles: 1 });
      await session.appendBundles(['com.c.first', 'com.c.second']);
      await rec.until(allEnded);
      codes.push(session.cancel('com.c.first')); // ended
      await session.release();
    });
    expect(codes).toEqual([13500011, 0, 13500012, 13500012]);
    const first = rec.of('com.c.first').map((c) => c.cb);
    expect(first.at(-1)).toBe('onBundleEnd');
    expect(first.filter((c) => c === 'onFileReady').length).toBeLessThan(6);
    expect(endCode(rec, 'com.c.first')).toBe(13500010);
    expect(endCode(rec, 'com.c.second')).toBeUndefined();
    // Its temp data is gone.
    expect(await readdir(path.join(d.dataRoot, 'com.c.first', 'backup', 'backup'))).toEqual([]);
  });
});

describe('release', () => {
  it('stops running bundles, reports them, completes the workflow with every outcome, and cleans temp data', async () => {
    const d = await freshDevice('release');
    await writeBundle(d.dataRoot, { name: 'com.l.running', hooks: { onBackup: 'sleep 30' } });
    await writeBundle(d.dataRoot, { name: 'com.l.waiting' });
    const taskQueue = uniqueTaskQueue('release');
    configureTool(taskQueue);
    const rec = new Recorder();
    const client = await testClient();
    let result: SessionResult | undefined;
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const session = new backup.SessionBackup(rec.callbacks, { maxConcurrentBundles: 1 });
      await session.appendBundles(['com.l.running', 'com.l.waiting']);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin'));
      await session.release();
      result = await client.workflow.getHandle(session.sessionId).result();
    });
    await client.connection.close();
    // The running bundle's end reached the tool before release resolved.
    expect(endCode(rec, 'com.l.running')).toBe(13500010);
    expect(result!.bundles.map((b) => [b.bundleName, b.state])).toEqual([
      ['com.l.running', 'cancelled'],
      ['com.l.waiting', 'notStarted'],
    ]);
  });
});

describe('the rest of the session surface', () => {
  it('cleanBundleTempDir, getCompatibilityInfo and getBackupInfo answer from the device and its hooks', async () => {
    const d = await freshDevice('surface');
    const root = await writeBundle(d.dataRoot, {
      name: 'com.s.hooked',
      hooks: { getBackupInfo: 'echo "{\\"size\\":42}"', getBackupCompatibilityInfo: 'printf "compat:"; cat' },
    });
    await writeBundle(d.dataRoot, { name: 'com.s.plain' });
    await writeFile(path.join(root, 'backup', 'backup', 'leftover'), 'x');
    const taskQueue = uniqueTaskQueue('surface');
    configureTool(taskQueue);
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const session = new backup.SessionBackup(new Recorder().callbacks);
      expect(await session.cleanBundleTempDir('com.s.hooked')).toBe(true);
      expect(await readdir(path.join(root, 'backup', 'backup'))).toEqual([]);
      expect(await session.cleanBundleTempDir('com.s.absent')).toBe(false);
      expect(await session.getCompatibilityInfo('com.s.hooked', 'v2')).toBe('compat:v2');
      expect(await session.getCompatibilityInfo('com.s.plain', 'v2')).toBe('');
      expect(await backup.getBackupInfo('com.s.hooked')).toBe('{"size":42}');
      expect(await backup.getBackupInfo('com.s.plain')).toBe('');
      await session.release();
    });
  });
});
