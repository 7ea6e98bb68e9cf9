/**
 * The session's start: an appendBundles made right after the constructor goes
 * with the workflow's start (update-with-start), and a backup append's checks
 * run as a local activity inside the workflow task that takes it, so the
 * children start in the task after the claim (a regular activity: a local one
 * stalled sessions appending at once on a worker with fewer workflow task
 * slots). An increment's first append rides too, its base manifests prepared
 * before the start goes out. An append made later is an update of its own; a
 * session from before the change still replays.
 */
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../../activities/index.js';
import { backup } from '../../client/index.js';
import { getClient } from '../../client/connection.js';
import { BusinessError } from '../../common/businessError.js';
import { readSettings } from '../../config/env.js';
import { writeManifest } from '../../engine/formats/manifest.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder, type Recorded } from '../helpers/recorder.js';
import { configureTool, temporalAddress, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

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
  it('an append right after the constructor is taken in the first workflow task with its checks (local); the children start once the claim is answered', async () => {
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
      // The first task's commands: the checks' marker and the claim.
      const claim = kinds.indexOf('activityTaskScheduled(claimBundles)');
      expect(claim).toBeGreaterThan(firstDone);
      expect(claim).toBeLessThan(secondDone);
      // The children start in the task that takes the claim's answer (an ack signal may take a task before it).
      const claimDone = kinds.indexOf('activityTaskCompleted', claim);
      const taskAfterClaim = kinds.indexOf('workflowTaskCompleted', claimDone);
      const firstChild = kinds.indexOf('startChildWorkflowExecutionInitiated');
      expect(claimDone).toBeGreaterThan(claim);
      expect(firstChild).toBeGreaterThan(taskAfterClaim);
      expect(kinds.slice(taskAfterClaim + 1, firstChild)).not.toContain('workflowTaskCompleted');
      expect(kinds).not.toContain('activityTaskScheduled(prepareBundles)');
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

  it('sessions appending at once on a worker with fewer workflow task slots than sessions all start (the claim holds no slot while it waits)', async () => {
    const names = ['com.start.s1', 'com.start.s2', 'com.start.s3', 'com.start.s4'];
    const d = await device(names);
    const taskQueue = uniqueTaskQueue('start-slots');
    configureTool(taskQueue);
    const connection = await NativeConnection.connect({ address: temporalAddress() });
    try {
      const worker = await Worker.create({
        connection,
        namespace: 'default',
        taskQueue,
        activities: createActivities(d),
        workflowBundle: { codePath: inject('workflowBundlePath') },
        // Fewer slots than sessions: a claim that held its session's slot while the claims workflow waited for one stalled here.
        maxConcurrentWorkflowTaskExecutions: 2,
      });
      await worker.runUntil(async () => {
        const recs = names.map(() => new Recorder());
        const sessions = recs.map((rec) => new backup.SessionBackup(rec.callbacks));
        await Promise.all(sessions.map((s, i) => s.appendBundles([names[i]!])));
        await Promise.all(recs.map((rec) => rec.until(allEnded)));
        recs.forEach((rec, i) => expectRan(rec, [names[i]!]));
        await Promise.all(sessions.map((s) => s.release()));
      });
    } finally {
      await connection.close();
    }
  });

  it("an increment's first append rides the start too: its base manifests are checked and copied before the start goes out", async () => {
    const names = ['com.start.incr'];
    const d = await device(names);
    const taskQueue = uniqueTaskQueue('start-incr');
    configureTool(taskQueue);
    const client = await testClient();
    const base = path.join(d.stateDir, '..', 'base.jsonl');
    await writeManifest(base, { bundleName: names[0]!, time: 1_700_000_000 }, [
      { path: 'gone.txt', kind: 'file', mode: 0o644, size: 1, mtimeMs: 1, sha256: 'ab'.repeat(32) },
    ]);
    await withWorker({ taskQueue, ...d }, async () => {
      // The tool's connection made already: the start would otherwise wait for it, long enough for the manifests.
      await getClient();
      const rec = new Recorder();
      let index = '';
      const session = new backup.IncrementalBackupSession({
        ...rec.callbacks,
        onFileReady: (err, file) => {
          if (!err && file.uri === 'manage.json') index = readFileSync(file.fd, 'utf8');
          if (!err && file.manifestFd !== undefined && file.manifestFd >= 0) closeSync(file.manifestFd);
          rec.callbacks.onFileReady(err, file);
        },
      });
      const fd = openSync(base, 'r');
      try {
        await session.appendBundles([{ bundleName: names[0]!, lastIncrementalTime: 1_700_000_000, manifestFd: fd }]);
      } finally {
        closeSync(fd);
      }
      await rec.until(allEnded);
      expectRan(rec, names);
      await session.release();

      const kinds = await historyKinds(client, session.sessionId);
      expect(kinds[kinds.indexOf('workflowTaskCompleted') + 1]).toBe('workflowExecutionUpdateAccepted');
      // It ran as an increment against the copied base: the base's file is recorded as deleted.
      const { incremental } = JSON.parse(index) as { incremental?: { deleted: Array<{ path: string }> } };
      expect(incremental?.deleted.map((x) => x.path)).toEqual(['gone.txt']);
    });
  });

  it("an increment's first append refused for its base manifest (13900020) keeps no copy; the session starts without it and takes a later append", async () => {
    const names = ['com.start.refused'];
    const d = await device(names);
    const taskQueue = uniqueTaskQueue('start-refused');
    configureTool(taskQueue);
    const client = await testClient();
    const bad = path.join(d.stateDir, '..', 'bad.jsonl');
    await writeFile(bad, 'not a manifest\n');
    await withWorker({ taskQueue, ...d }, async () => {
      const rec = new Recorder();
      const session = new backup.IncrementalBackupSession(rec.callbacks);
      const fd = openSync(bad, 'r');
      const err = await session.appendBundles([{ bundleName: names[0]!, lastIncrementalTime: 1_700_000_000, manifestFd: fd }]).then(
        () => undefined,
        (e: unknown) => e,
      );
      closeSync(fd);
      expect(err).toBeInstanceOf(BusinessError);
      expect((err as BusinessError).code).toBe(13900020);
      expect(existsSync(path.join(readSettings().stateDir, 'transfer', session.sessionId))).toBe(false);
      await session.appendBundles([{ bundleName: names[0]!, lastIncrementalTime: 0, manifestFd: -1 }]);
      await rec.until(allEnded);
      expectRan(rec, names);
      await session.release();
      // The refused one never reached the session: the one append it took is the later one.
      const { events } = await client.workflow.getHandle(session.sessionId).fetchHistory();
      const updates = (events ?? []).flatMap((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name ?? []);
      expect(updates.filter((n) => n === 'appendBundles')).toHaveLength(1);
    });
  });

  it('a session run by the worker before local checks (806cb15: regular prepareBundles and claimBundles activities) replays', async () => {
    // Binary protobuf: the fetched history as it was, encoded (two bundles, backed up by the 806cb15 worker).
    const history = proto.temporal.api.history.v1.History.decode(await readFile(fixture));
    await Worker.runReplayHistory(replayOptions(), history, 'ohbackup-backup-c41f0891-8997-4eb6-90fb-43c85cc6db55');
  });
});
