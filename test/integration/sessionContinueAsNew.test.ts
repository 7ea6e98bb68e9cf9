/**
 * A session of many bundles continues as new several times while its bundles
 * run (the server suggests it early here): each continue-as-new lands on its
 * first try (no workflow task fails on a signal or child close that raced it,
 * which would replay the whole history while the tool's queries wait), the
 * tool never hears of an outage, and every bundle ends once, done.
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

describe('a session that continues as new under load', () => {
  it('continues as new without a failed workflow task, no onBackupServiceDied, every bundle done once', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-can-'));
    const dataRoot = path.join(root, 'device');
    const names = Array.from({ length: BUNDLES }, (_, i) => `com.can.b${String(i).padStart(3, '0')}`);
    for (const name of names) await writeBundle(dataRoot, { name, files: {} });
    // Suggested after 150 events: a few continue-as-new runs within the session.
    const server = await startDevServer({
      headless: true,
      dbFile: path.join(root, 'temporal.db'),
      dynamicConfig: ['limit.historyCount.suggestContinueAsNew=150'],
    });
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    try {
      const taskQueue = uniqueTaskQueue('can');
      configureTool(taskQueue, server.address);
      const rec = new Recorder();
      const sessionId = await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state'), address: server.address }, async () => {
        const session = new backup.SessionBackup(rec.callbacks);
        await session.appendBundles(names);
        await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
        await session.release();
        return session.sessionId;
      });
      // Every run of the session, newest first, each found from the one that followed it.
      const runs: Array<{ failed: number; continued: boolean }> = [];
      let runId: string | undefined;
      for (;;) {
        const { events = [] } = await client.workflow.getHandle(sessionId, runId).fetchHistory();
        runs.push({
          failed: events.filter((e) => e.workflowTaskFailedEventAttributes).length,
          continued: events.some((e) => e.workflowExecutionContinuedAsNewEventAttributes),
        });
        runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
        if (!runId) break;
      }
      expect(runs.length, 'runs of the session').toBeGreaterThanOrEqual(3);
      expect(runs.map((r) => r.failed)).toEqual(runs.map(() => 0));
      expect(rec.count('onBackupServiceDied')).toBe(0);
      for (const name of names) {
        const ends = rec.of(name).filter((c) => c.cb === 'onBundleEnd');
        expect(ends, name).toEqual([{ cb: 'onBundleEnd', bundleName: name, code: undefined, message: undefined }]);
      }
    } finally {
      await connection.close();
      await server.stop();
    }
  }, 300_000);
});
