/**
 * Hooks that misbehave, in a real worker process: one that hangs is killed at
 * the bundle's time limit (13500003) with its whole process group, one that
 * crashes ends its bundle with 13500004 and what it said on stderr, and ones
 * that print megabytes (text or binary) are capped without the worker's
 * memory growing; the other bundles of the session are unaffected. A deadline
 * that updateTimer extends while an onBackup/onRestore hook runs lets the hook
 * run past the old one (the deadline is the hook's one limit).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { runBackup } from '../../client/runs/runBackup.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { writeBundle } from '../helpers/device.js';
import { groupMembers, processesWithEnv } from '../helpers/processes.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue } from '../helpers/temporal.js';
import { appendBundlesUpdate, eventsQuery, outcomesQuery, releaseUpdate, updateTimerSignal } from '../../common/messages.js';
import { bundleWorkflowId } from '../../common/session.js';
import type { bundleBackupWorkflow, sessionWorkflow } from '../../workflows/index.js';
import { compareBundleSet } from '../helpers/verifySet.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/workerProcess.js';

const HANG = 'com.hook.hang';
const CRASH = 'com.hook.crash';
const BINARY = 'com.hook.binary';
const PLAIN = 'com.hook.plain';
const CHATTY = 'com.hook.chatty';
const CHATTIER = 'com.hook.chattier';
const EXTEND_RESTORE = 'com.hook.extend.restore';
const EXTEND_BACKUP = 'com.hook.extend.backup';
const STDOUT_CAP = 1024 * 1024;
const MiB = 1024 * 1024;

let root: string;
let dataRoot: string;
let worker: WorkerProcess;
let taskQueue: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-hooks-'));
  dataRoot = path.join(root, 'device');
  const files = { 'a.txt': 'a', 'd/b.txt': 'b'.repeat(5000) };
  // HANG tells the test it runs through a FIFO (its process group), then waits for ever.
  await writeBundle(dataRoot, { name: HANG, files, hooks: { onBackup: 'sleep 600 & echo $$ > ready; sleep 600' } });
  execFileSync('mkfifo', [path.join(dataRoot, HANG, 'ready')]);
  await writeBundle(dataRoot, { name: CRASH, files, hooks: { onBackup: 'echo "half done"; echo "cannot reach the database" >&2; exit 7' } });
  await writeBundle(dataRoot, { name: BINARY, files, hooks: { onBackup: 'head -c 5000000 /dev/urandom' } });
  await writeBundle(dataRoot, { name: PLAIN, files });
  // Text on stdout, then on stderr: 120 MB, and four times that.
  const chatty = (mb: number) => `yes 0123456789abcdef | head -c ${mb * 1_000_000}; head -c ${(mb / 5) * 1_000_000} /dev/zero | tr "\\0" e >&2`;
  await writeBundle(dataRoot, { name: CHATTY, files, hooks: { onBackup: chatty(100) } });
  await writeBundle(dataRoot, { name: CHATTIER, files, hooks: { onBackup: chatty(400) } });
  // Tells the test through a FIFO that it runs, then outlives a short deadline the test extends meanwhile.
  await writeBundle(dataRoot, { name: EXTEND_RESTORE, files, hooks: { onRestore: 'echo $$ > ready; sleep 8; echo restored-after-extension' } });
  execFileSync('mkfifo', [path.join(dataRoot, EXTEND_RESTORE, 'ready')]);
  await writeBundle(dataRoot, { name: EXTEND_BACKUP, files, hooks: { onBackup: 'echo $$ > ready; sleep 8; echo backed-up-after-extension' } });
  execFileSync('mkfifo', [path.join(dataRoot, EXTEND_BACKUP, 'ready')]);
  taskQueue = uniqueTaskQueue('hooks');
  configureTool(taskQueue);
  worker = await startWorkerProcess({ taskQueue, dataRoot, stateDir: path.join(root, 'state'), prebuiltWorkflows: true });
});

afterAll(async () => {
  await worker?.kill('SIGTERM');
  await rm(root, { recursive: true, force: true });
});

/** The worker's peak resident memory so far (VmHWM), bytes. */
function peakRss(pid: number): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

async function runSession(names: string[], onBegin?: (name: string) => void) {
  const set = new BackupSetWriter(path.join(root, `set-${names.join('-')}`));
  await set.init();
  const rec = new Recorder(set);
  const session = new backup.SessionBackup({
    ...rec.callbacks,
    onBundleBegin: (err, name) => {
      rec.callbacks.onBundleBegin(err, name);
      if (!err) onBegin?.(name);
    },
  });
  await session.appendBundles(names);
  return { set, rec, session };
}

const end = (rec: Recorder, name: string) => rec.of(name).find((c) => c.cb === 'onBundleEnd');
const result = (rec: Recorder, name: string) => rec.of(name).find((c) => c.cb === 'onResultReport')?.payload;

describe('hooks that misbehave', () => {
  it('a hanging hook is killed at the time limit with its process group (13500003); a crashing one gives 13500004 and its stderr; binary output is capped; the others complete', async () => {
    const { set, rec, session } = await runSession([HANG, CRASH, BINARY, PLAIN]);
    // Once the hook runs (it wrote its process group to the FIFO), give the bundle 1 s more.
    const pgid = Number(await readFile(path.join(dataRoot, HANG, 'ready'), 'utf8'));
    expect(groupMembers(pgid).length).toBeGreaterThanOrEqual(3); // sh, its background sleep, the watchdog (and the other sleep)
    // updateTimer answers from the tool's own view: the bundle must have begun there (onBundleBegin delivered).
    await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin' && x.bundleName === HANG));
    expect(backup.updateTimer(HANG, 1000)).toBe(true);
    await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
    await set.flush();
    await session.release();

    expect(end(rec, HANG)).toMatchObject({ code: 13500003 });
    // The bundle ended only after its hook's activity stopped: its process group is gone.
    for (let i = 0; i < 500 && groupMembers(pgid).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(groupMembers(pgid)).toEqual([]);
    expect(processesWithEnv('OHBACKUP_BUNDLE', HANG)).toEqual([]);

    expect(end(rec, CRASH)).toMatchObject({ code: 13500004 });
    expect(end(rec, CRASH)!.message).toMatch(/hook onBackup of com\.hook\.crash exited with 7: cannot reach the database/);
    expect(JSON.parse(result(rec, CRASH)!)).toMatchObject({ resultInfo: { errorCode: 13500004 } });

    for (const name of [BINARY, PLAIN]) {
      expect(end(rec, name)?.code, `${name}: ${end(rec, name)?.message}`).toBeUndefined();
      expect(await compareBundleSet(set.dir, dataRoot, name)).toEqual([]);
    }
    // 5 MB of random bytes: kept within the cap as encoded, so the answer travels.
    const binary = result(rec, BINARY)!;
    expect(binary.length).toBeGreaterThan(0);
    expect(Buffer.byteLength(JSON.stringify(binary))).toBeLessThanOrEqual(STDOUT_CAP);
  });

  it('hooks printing megabytes on stdout and stderr: answers capped, bundles complete, the worker does not grow with the output', async () => {
    const pid = worker.child.pid!;
    const peaks = [peakRss(pid)];
    for (const name of [CHATTY, CHATTIER]) {
      const { set, rec, session } = await runSession([name]);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await set.flush();
      await session.release();
      expect(end(rec, name)?.code, end(rec, name)?.message).toBeUndefined();
      expect(await compareBundleSet(set.dir, dataRoot, name)).toEqual([]);
      const answer = result(rec, name)!;
      expect(answer.startsWith('0123456789abcdef\n0123456789abcdef\n')).toBe(true);
      expect(Buffer.byteLength(JSON.stringify(answer))).toBeLessThanOrEqual(STDOUT_CAP);
      expect(answer.length).toBeGreaterThan(STDOUT_CAP / 2);
      peaks.push(peakRss(pid));
    }
    const [p0, p1, p2] = peaks.map((p) => Math.round(p / MiB));
    console.log(`worker peak RSS: ${p0} MiB, after 120 MB of hook output ${p1} MiB, after 480 MB more ${p2} MiB`);
    // Output is dropped as it arrives: 480 MB more does not raise the peak by anything like it (kept output would add
    // hundreds of MiB; what garbage costs is bounded by the GC, and differs between Node versions).
    expect(peaks[2]! - peaks[1]!).toBeLessThan(96 * MiB);
    expect(peaks[1]! - peaks[0]!).toBeLessThan(128 * MiB);
  });
});

describe('updateTimer reaches a running hook', () => {
  it('onRestore: a deadline extended while the hook runs past the old one lets the hook finish and the bundle succeed', async () => {
    const setDir = path.join(root, 'set-extend-restore');
    const backedUp = await runBackup({ out: setDir, bundles: [EXTEND_RESTORE] });
    expect(backedUp.outcome, JSON.stringify(backedUp.bundles)).toBe('done');
    const rec = new Recorder(undefined, { observer: true });
    const restoring = restoreFromSet({
      from: setDir,
      bundles: [EXTEND_RESTORE],
      observe: {
        ...rec.callbacks,
        onBundleBegin: (err, name) => {
          rec.callbacks.onBundleBegin(err, name);
          // A short deadline: the hook starts under it (the files are small), and would be killed at it.
          if (!err) expect(backup.updateTimer(name, 4000)).toBe(true);
        },
      },
    });
    // The hook runs (it wrote its pid to the FIFO): move the deadline well past its 8 s.
    await readFile(path.join(dataRoot, EXTEND_RESTORE, 'ready'), 'utf8');
    expect(backup.updateTimer(EXTEND_RESTORE, 60_000)).toBe(true);
    const restored = await restoring;
    expect(restored.bundles.map((b) => [b.bundleName, b.state, b.error?.message])).toEqual([[EXTEND_RESTORE, 'done', undefined]]);
    expect(end(rec, EXTEND_RESTORE)?.code).toBeUndefined();
    expect(result(rec, EXTEND_RESTORE)).toBe('restored-after-extension');
  });

  it('onBackup: a deadline extended while the hook runs past the old one lets the hook finish and the bundle succeed', async () => {
    // The tool can move a backup bundle's deadline only once its hook runs (the hook starts with the begin), under
    // 15 minutes of default. Here the test plays the session's part: a session that starts no child of its own
    // (maxConcurrentBundles 0) keeps the bundle's events, and the test starts the child with a 4 s deadline.
    const client = await testClient();
    try {
      const sessionId = `ohbackup-hook-extend-${path.basename(root)}`;
      const session = await client.workflow.start<typeof sessionWorkflow>('sessionWorkflow', {
        taskQueue,
        workflowId: sessionId,
        args: [{ sessionId, kind: 'backup', maxConcurrentBundles: 0 }],
      });
      await session.executeUpdate(appendBundlesUpdate, { args: [{ bundles: [{ bundleName: EXTEND_BACKUP }] }] });
      const child = await client.workflow.signalWithStart<typeof bundleBackupWorkflow, [number]>('bundleBackupWorkflow', {
        taskQueue,
        workflowId: bundleWorkflowId(sessionId, EXTEND_BACKUP),
        args: [{ sessionId, sessionWorkflowId: sessionId, kind: 'backup', request: { bundleName: EXTEND_BACKUP, priority: 0, order: 0 } }],
        signal: updateTimerSignal,
        signalArgs: [4000],
      });
      // The hook runs (it wrote its pid to the FIFO): move the deadline well past its 8 s.
      await readFile(path.join(dataRoot, EXTEND_BACKUP, 'ready'), 'utf8');
      await child.signal(updateTimerSignal, 60_000);
      await child.result();
      const [outcome] = await session.query(outcomesQuery);
      expect([outcome?.bundleName, outcome?.state, outcome?.error?.message]).toEqual([EXTEND_BACKUP, 'done', undefined]);
      const { events } = await session.query(eventsQuery, 0, 1000);
      expect(events.find((e) => e.type === 'resultReport')).toMatchObject({ result: 'backed-up-after-extension' });
      await session.executeUpdate(releaseUpdate, { args: [{}] });
      await session.result();
    } finally {
      await client.connection.close();
    }
  });
});
