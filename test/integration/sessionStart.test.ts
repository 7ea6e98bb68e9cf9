/**
 * The session's start: an appendBundles made right after the constructor goes
 * with the workflow's start (update-with-start), and an append's checks and
 * claim run as local activities inside the workflow task that takes it, so
 * the children start in that task's completion. An append made later is an
 * update of its own; a session from before the change still replays.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { backup } from '../../client/index.js';
import { BusinessError } from '../../common/businessError.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder, type Recorded } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const allEnded = (c: Recorded[]) => c.some((x) => x.cb === 'onAllBundlesEnd');
const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/histories/session-806cb15.bin');
const replayOptions = () => ({ workflowBundle: { codePath: inject('workflowBundlePath') } });

async function device(names: string[]) {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-start-'));
  const dataRoot = path.join(root, 'device');
  for (const name of names) await writeBundle(dataRoot, { name, files: { 'a.txt': `${name}\n` } });
  return { dataRoot, stateDir: path.join(root, 'state') };
}

/** The session's history as event kinds ("workflowTaskCompleted", "markerRecorded", …) with each activity's name. */
async function historyKinds(client: Client, workflowId: string): Promise<string[]> {
  const { events } = await client.workflow.getHandle(workflowId).fetchHistory();
  return (events ?? []).map((e) => {
    const key = Object.keys(e).find((k) => k.endsWith('EventAttributes') && e[k as keyof typeof e])!;
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    return key.replace('EventAttributes', '') + (name ? `(${name})` : '');
  });
}

function expectRan(rec: Recorder, names: string[]): void {
  for (const name of names) {
    expect(rec.of(name).find((c) => c.cb === 'onBundleEnd')?.code, name).toBeUndefined();
    expect(
      rec.of(name).some((c) => c.cb === 'onFileReady'),
      name,
    ).toBe(true);
  }
}

describe('session start', () => {
  it('an append right after the constructor is taken in the first workflow task, whose completion starts the children; the checks and claim are local', async () => {
    const names = ['com.start.one', 'com.start.two'];
    const d = await device(names);
    const taskQueue = uniqueTaskQueue('start');
    configureTool(taskQueue);
    const client = await testClient();
    await withWorker({ taskQueue, ...d }, async () => {
      const rec = new Recorder();
      const session = new backup.SessionBackup(rec.callbacks);
      await session.appendBundles(names);
      await rec.until(allEnded);
      expectRan(rec, names);
      await session.release();

      const kinds = await historyKinds(client, session.sessionId);
      const firstDone = kinds.indexOf('workflowTaskCompleted');
      const secondDone = kinds.indexOf('workflowTaskCompleted', firstDone + 1);
      expect(kinds[firstDone + 1]).toBe('workflowExecutionUpdateAccepted');
      const firstChild = kinds.indexOf('startChildWorkflowExecutionInitiated');
      expect(firstChild).toBeGreaterThan(firstDone);
      expect(firstChild).toBeLessThan(secondDone);
      expect(kinds).not.toContain('activityTaskScheduled(prepareBundles)');
      expect(kinds).not.toContain('activityTaskScheduled(claimBundles)');
      // The new shape replays too.
      await Worker.runReplayHistory(replayOptions(), await client.workflow.getHandle(session.sessionId).fetchHistory(), session.sessionId);
    });
  });

  it('an append after the start went out is an update of its own; a session ID in use fails the append as it fails any other first call', async () => {
    const names = ['com.start.late'];
    const d = await device(names);
    const taskQueue = uniqueTaskQueue('start-late');
    configureTool(taskQueue);
    const client = await testClient();
    await withWorker({ taskQueue, ...d }, async () => {
      const rec = new Recorder();
      const session = new backup.SessionBackup(rec.callbacks);
      // A call that needs the started session: the start has gone out alone.
      await session.getLocalCapabilities();
      await session.appendBundles(names);
      await rec.until(allEnded);
      expectRan(rec, names);

      const kinds = await historyKinds(client, session.sessionId);
      expect(kinds.indexOf('workflowExecutionUpdateAccepted')).toBeGreaterThan(kinds.indexOf('workflowTaskCompleted') + 1);

      const sameId = { sessionId: session.sessionId };
      const withAppend = await new backup.SessionBackup(new Recorder().callbacks, sameId).appendBundles(names).catch((e: unknown) => e);
      const alone = await new backup.SessionBackup(new Recorder().callbacks, sameId).getLocalCapabilities().catch((e: unknown) => e);
      expect(withAppend).toBeInstanceOf(BusinessError);
      expect(alone).toBeInstanceOf(BusinessError);
      expect((withAppend as BusinessError).code).toBe((alone as BusinessError).code);
      await session.release();
    });
  });

  it('a session run by the worker before local checks (806cb15: regular prepareBundles and claimBundles activities) replays', async () => {
    // Binary protobuf: the fetched history as it was, encoded (two bundles, backed up by the 806cb15 worker).
    const history = proto.temporal.api.history.v1.History.decode(await readFile(fixture));
    await Worker.runReplayHistory(replayOptions(), history, 'ohbackup-backup-c41f0891-8997-4eb6-90fb-43c85cc6db55');
  });
});
