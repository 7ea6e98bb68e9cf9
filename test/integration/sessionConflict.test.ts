/**
 * 13500013, and only then (api.md §6): a bundle already in another active
 * session of the same device begins and ends with 13500013 in the second
 * session while its other bundles run. Claims are race-free, freed at
 * release, never held by a session that no longer runs, and per device.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { runBackup } from '../../client/runs/runBackup.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { bundleClaimWorkflowId, deviceKey } from '../../common/deviceKey.js';
import { sessionWorkflow } from '../../workflows/index.js';
import { appendBundlesUpdate, outcomesQuery } from '../../common/messages.js';
import { bundleClaimsQuery } from '../../common/messages.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder, type Recorded } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const CONFLICT = 13500013;
const allEnded = (c: Recorded[]) => c.some((x) => x.cb === 'onAllBundlesEnd');
const beginCode = (rec: Recorder, name: string) => rec.of(name).find((c) => c.cb === 'onBundleBegin')?.code;
const endCode = (rec: Recorder, name: string) => rec.of(name).find((c) => c.cb === 'onBundleEnd')?.code;

async function device(prefix: string, names: string[]) {
  const root = await mkdtemp(path.join(os.tmpdir(), `ohbackup-${prefix}-`));
  const dataRoot = path.join(root, 'device');
  for (const name of names) await writeBundle(dataRoot, { name, files: { 'a.txt': `${name}\n`, 'sub/b.txt': 'b' } });
  return { dataRoot, stateDir: path.join(root, 'state') };
}

/** Runs a session over `names` until every bundle ended; the session stays open (active) unless released. */
async function runSession(names: string[], options: { taskQueue?: string } = {}) {
  const rec = new Recorder();
  const session = new backup.SessionBackup(rec.callbacks, options);
  await session.appendBundles(names);
  await rec.until(allEnded);
  return { rec, session };
}

/** A bundle that ran to its end without error, with files. */
function expectRan(rec: Recorder, name: string): void {
  expect(beginCode(rec, name), name).toBeUndefined();
  expect(endCode(rec, name), name).toBeUndefined();
  expect(
    rec.of(name).some((c) => c.cb === 'onFileReady'),
    name,
  ).toBe(true);
}

/** Begun and ended with 13500013, nothing handed over. */
function expectConflict(rec: Recorder, name: string): void {
  expect(rec.of(name).map((c) => [c.cb, c.code])).toEqual([
    ['onBundleBegin', CONFLICT],
    ['onBundleEnd', CONFLICT],
  ]);
}

describe('session conflict (13500013)', () => {
  it('a bundle held by an active session gets 13500013 in a second one whose other bundles run; after release a new session takes it; the claims end with the sessions', async () => {
    const d = await device('conflict', ['com.c.shared', 'com.c.first', 'com.c.second']);
    const taskQueue = uniqueTaskQueue('conflict');
    configureTool(taskQueue);
    const client = await testClient();
    await withWorker({ taskQueue, ...d }, async () => {
      const first = await runSession(['com.c.shared', 'com.c.first']);
      expectRan(first.rec, 'com.c.shared');

      // The first session has ended its bundles but is not released: it still holds them.
      const second = await runSession(['com.c.second', 'com.c.shared']);
      expectConflict(second.rec, 'com.c.shared');
      expect(second.rec.of('com.c.shared')[0]!.message).toContain(first.session.sessionId);
      expectRan(second.rec, 'com.c.second');
      expect(second.rec.count('onAllBundlesEnd')).toBe(1);
      await second.session.release();

      await first.session.release();
      const third = await runSession(['com.c.shared', 'com.c.first']);
      expectRan(third.rec, 'com.c.shared');
      expectRan(third.rec, 'com.c.first');
      const claims = client.workflow.getHandle(bundleClaimWorkflowId(deviceKey(taskQueue)));
      expect(await claims.query(bundleClaimsQuery)).toEqual({ 'com.c.shared': third.session.sessionId, 'com.c.first': third.session.sessionId });
      await third.session.release();
      // Nothing claimed any more: the device's claim workflow has completed.
      expect((await claims.describe()).status.name).toBe('COMPLETED');
    });
  });

  it('two sessions appending the same bundle at the same moment: exactly one gets it, every round', async () => {
    const names = ['com.r.zero', 'com.r.one', 'com.r.two'];
    const d = await device('race', names);
    const taskQueue = uniqueTaskQueue('race');
    configureTool(taskQueue);
    await withWorker({ taskQueue, ...d }, async () => {
      for (const name of names) {
        const recs = [new Recorder(), new Recorder()];
        const sessions = recs.map((r) => new backup.SessionBackup(r.callbacks));
        await Promise.all(sessions.map((s) => s.appendBundles([name])));
        await Promise.all(recs.map((r) => r.until(allEnded)));
        const codes = recs.map((r) => beginCode(r, name));
        expect(
          codes.filter((c) => c === CONFLICT),
          `${name}: ${codes}`,
        ).toHaveLength(1);
        const winner = recs[codes.indexOf(undefined)]!;
        expectRan(winner, name);
        expectConflict(recs[codes.indexOf(CONFLICT)]!, name);
        await Promise.all(sessions.map((s) => s.release()));
      }
    });
  });

  it('sessions of different devices (task queues) never conflict', async () => {
    const d = await device('devices', ['com.d.same']);
    const [queueA, queueB] = [uniqueTaskQueue('devA'), uniqueTaskQueue('devB')];
    await withWorker({ taskQueue: queueA, ...d }, () =>
      withWorker({ taskQueue: queueB, ...d }, async () => {
        const a = await runSession(['com.d.same'], { taskQueue: queueA });
        const b = await runSession(['com.d.same'], { taskQueue: queueB });
        expectRan(a.rec, 'com.d.same');
        expectRan(b.rec, 'com.d.same');
        await Promise.all([a.session.release(), b.session.release()]);
      }),
    );
  });

  it("a terminated session's claim does not block the bundle", async () => {
    const d = await device('terminated', ['com.t.held']);
    const taskQueue = uniqueTaskQueue('terminated');
    configureTool(taskQueue);
    const client = await testClient();
    await withWorker({ taskQueue, ...d }, async () => {
      // A session driven straight through Temporal, left unreleased, then terminated: it never releases its claim.
      const doomed = await client.workflow.start(sessionWorkflow, {
        workflowId: `doomed-${taskQueue}`,
        taskQueue,
        args: [{ sessionId: `doomed-${taskQueue}`, kind: 'backup' }],
      });
      await doomed.executeUpdate(appendBundlesUpdate, { args: [{ bundles: [{ bundleName: 'com.t.held' }] }] });
      const claims = client.workflow.getHandle(bundleClaimWorkflowId(deviceKey(taskQueue)));
      expect(await claims.query(bundleClaimsQuery)).toEqual({ 'com.t.held': doomed.workflowId });
      // Let its bundle finish, so only the claim is left (waits on the workflow's state, not on time).
      while ((await doomed.query(outcomesQuery))[0]?.state !== 'done') await new Promise((r) => setTimeout(r, 200));
      await doomed.terminate('test: a session that never releases');

      const next = await runSession(['com.t.held']);
      expectRan(next.rec, 'com.t.held');
      expect(await claims.query(bundleClaimsQuery)).toEqual({ 'com.t.held': next.session.sessionId });
      await next.session.release();
    });
  });

  it('a restore conflicts over the device bundle it writes (after app mapping), not over the name in the set', async () => {
    const d = await device('restore', ['com.m.held', 'com.m.free']);
    const taskQueue = uniqueTaskQueue('restore');
    configureTool(taskQueue);
    await withWorker({ taskQueue, ...d }, async () => {
      const set = path.join(d.stateDir, 'set');
      expect((await runBackup({ out: set, bundles: ['com.m.held', 'com.m.free'] })).outcome).toBe('done');
      const holder = await runSession(['com.m.held']);
      // com.m.free's data into com.m.held, which the holder has: 13500013.
      const mapped = await restoreFromSet({ from: set, bundles: ['com.m.free'], map: { 'com.m.free': 'com.m.held' } });
      expect(mapped.bundles.map((b) => [b.bundleName, b.state, b.error?.code])).toEqual([['com.m.free', 'failed', CONFLICT]]);
      // Into itself: free.
      const plain = await restoreFromSet({ from: set, bundles: ['com.m.free'] });
      expect(plain.bundles.map((b) => [b.bundleName, b.state])).toEqual([['com.m.free', 'done']]);
      await holder.session.release();
    });
  });
});
