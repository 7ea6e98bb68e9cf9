/**
 * A session of many bundles continues as new several times while its bundles
 * run (the server suggests it early here): each continue-as-new lands on its
 * first try (no workflow task fails on a signal or child close that raced it,
 * which would replay the whole history while the tool's queries wait), the
 * tool never hears of an outage, and every bundle ends once, done. A bundle
 * paused at rate 0 holds a continue-as-new (and the bundles behind it) only
 * for a bounded while.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { startDevServer } from '../../workers/devServer.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const BUNDLES = 90;

/** Every run of the session, newest first (each found from the one that followed it): its failed workflow tasks. */
async function sessionRuns(client: Client, sessionId: string): Promise<number[]> {
  const failed: number[] = [];
  let runId: string | undefined;
  for (;;) {
    const { events = [] } = await client.workflow.getHandle(sessionId, runId).fetchHistory();
    failed.push(events.filter((e) => e.workflowTaskFailedEventAttributes).length);
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!runId) return failed;
  }
}

/** A device of `names` (empty bundles unless `files` says), and a server of its own that suggests continue-as-new after 150 events. */
async function setUp(names: string[], files: Record<string, Record<string, string>> = {}) {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-can-'));
  const dataRoot = path.join(root, 'device');
  for (const name of names) await writeBundle(dataRoot, { name, files: files[name] ?? {} });
  const server = await startDevServer({
    headless: true,
    dbFile: path.join(root, 'temporal.db'),
    dynamicConfig: ['limit.historyCount.suggestContinueAsNew=150'],
  });
  const connection = await Connection.connect({ address: server.address });
  const taskQueue = uniqueTaskQueue('can');
  configureTool(taskQueue, server.address);
  return {
    client: new Client({ connection }),
    worker: <T>(fn: () => Promise<T>) => withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state'), address: server.address }, fn),
    async close() {
      await connection.close();
      await server.stop();
    },
  };
}

const doneEnd = (name: string) => [{ cb: 'onBundleEnd', bundleName: name, code: undefined, message: undefined }];

describe('a session that continues as new under load', () => {
  it('continues as new without a failed workflow task, no onBackupServiceDied, every bundle done once', async () => {
    const names = Array.from({ length: BUNDLES }, (_, i) => `com.can.b${String(i).padStart(3, '0')}`);
    const t = await setUp(names);
    try {
      const rec = new Recorder();
      const sessionId = await t.worker(async () => {
        const session = new backup.SessionBackup(rec.callbacks);
        await session.appendBundles(names);
        await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
        await session.release();
        return session.sessionId;
      });
      const failed = await sessionRuns(t.client, sessionId);
      expect(failed.length, 'runs of the session').toBeGreaterThanOrEqual(3);
      expect(failed).toEqual(failed.map(() => 0));
      expect(rec.count('onBackupServiceDied')).toBe(0);
      for (const name of names)
        expect(
          rec.of(name).filter((c) => c.cb === 'onBundleEnd'),
          name,
        ).toEqual(doneEnd(name));
    } finally {
      await t.close();
    }
  }, 300_000);

  it('a bundle paused at rate 0 holds a continue-as-new only briefly: the other bundles all run meanwhile, then it resumes and completes', async () => {
    const paused = 'com.can.paused';
    const others = Array.from({ length: 30 }, (_, i) => `com.can.o${String(i).padStart(2, '0')}`);
    const t = await setUp([paused, ...others], { [paused]: { 'a.txt': 'a', 'b.txt': 'b' } });
    try {
      const rec = new Recorder();
      const callbacks: typeof rec.callbacks = {
        ...rec.callbacks,
        onBundleBegin: (err, name) => {
          rec.callbacks.onBundleBegin(err, name);
          if (!err && name === paused) backup.updateSendRate(name, 0);
        },
      };
      const sessionId = await t.worker(async () => {
        const session = new backup.SessionBackup(callbacks, { maxConcurrentBundles: 2 });
        await session.appendBundles([paused, ...others]);
        await rec.until((c) => others.every((name) => c.some((x) => x.cb === 'onBundleEnd' && x.bundleName === name)));
        expect(rec.of(paused).filter((c) => c.cb === 'onFileReady')).toEqual([]);
        expect(backup.updateSendRate(paused, 800)).toBe(true);
        await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
        await session.release();
        return session.sessionId;
      });
      expect((await sessionRuns(t.client, sessionId)).length, 'runs of the session').toBeGreaterThanOrEqual(2);
      for (const name of [paused, ...others])
        expect(
          rec.of(name).filter((c) => c.cb === 'onBundleEnd'),
          name,
        ).toEqual(doneEnd(name));
      expect(rec.of(paused).filter((c) => c.cb === 'onFileReady').length).toBeGreaterThanOrEqual(2);
    } finally {
      await t.close();
    }
  }, 300_000);
});
