import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSummary } from '../helpers/cliJson.js';
import { backup } from '../../client/index.js';
import { OhbackupBundles, OhbackupKind, OhbackupState } from '../../common/searchAttributes.js';
import { bundleWorkflowId } from '../../common/session.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, temporalAddress, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

describe('what people see in the Temporal UI', () => {
  it('sessions carry a summary, current details and search attributes; bundles are children with summaries; `ohbackup sessions` finds them', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-ui-'));
    const dataRoot = path.join(root, 'device');
    await writeBundle(dataRoot, { name: 'com.v.one' });
    await writeBundle(dataRoot, { name: 'com.v.two' });
    const taskQueue = uniqueTaskQueue('ui');
    configureTool(taskQueue);
    const client = await testClient();
    const rec = new Recorder();
    let sessionId = '';
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const session = new backup.SessionBackup(rec.callbacks);
      sessionId = session.sessionId;
      await session.appendBundles(['com.v.one', 'com.v.two']);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      const running = await client.workflow.getHandle(sessionId).describe();
      expect(running.typedSearchAttributes.get(OhbackupKind)).toBe('backup');
      expect(running.typedSearchAttributes.get(OhbackupState)).toBe('running');
      expect(running.typedSearchAttributes.get(OhbackupBundles)).toEqual(['com.v.one', 'com.v.two']);
      expect(await running.staticSummary()).toBe('ohbackup backup session');
      // The UI's "current details": every bundle's state and files.
      const meta = await client.workflow.getHandle(sessionId).query<{ currentDetails?: string }>('__temporal_workflow_metadata');
      expect(meta.currentDetails).toMatch(/`com\.v\.one`: done, 2 files/);
      await session.release();
    });
    const done = await client.workflow.getHandle(sessionId).describe();
    expect(done.typedSearchAttributes.get(OhbackupState)).toBe('released');
    const child = await client.workflow.getHandle(bundleWorkflowId(sessionId, 'com.v.one')).describe();
    expect(await child.staticSummary()).toBe('backup of com.v.one');
    expect(child.parentExecution?.workflowId).toBe(sessionId);

    // Visibility is eventually consistent: ask until the session shows (bounded).
    let listed: Array<{ sessionId: string; kind: string; bundles: string[] }> = [];
    for (let i = 0; i < 50 && !listed.some((s) => s.sessionId === sessionId); i++) {
      listed = await new Promise((resolve, reject) =>
        execFile(
          process.execPath,
          [CLI, 'sessions', '--bundle', 'com.v.two', '--json'],
          { env: { ...process.env, TEMPORAL_ADDRESS: temporalAddress() } },
          (err, out) => (err ? reject(err) : resolve(jsonSummary<{ sessions: typeof listed }>(out, 'sessions').sessions)),
        ),
      );
    }
    expect(listed.find((s) => s.sessionId === sessionId)).toMatchObject({ kind: 'backup', bundles: ['com.v.one', 'com.v.two'] });
    await client.connection.close();
  });
});

describe('a session of many bundles', () => {
  it('stays searchable by its first bundles when their names exceed one search attribute value', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-many-'));
    const dataRoot = path.join(root, 'device');
    const names = Array.from({ length: 120 }, (_, i) => `com.many.bundle${String(i).padStart(3, '0')}`);
    for (const name of names) await writeBundle(dataRoot, { name, files: {} });
    const taskQueue = uniqueTaskQueue('many');
    configureTool(taskQueue);
    const rec = new Recorder();
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const session = new backup.SessionBackup(rec.callbacks, { maxConcurrentBundles: 10 });
      await session.appendBundles(names);
      const d = await client.workflow.getHandle(session.sessionId).describe();
      const listed = d.typedSearchAttributes.get(OhbackupBundles) ?? [];
      expect(listed.length).toBeGreaterThan(10);
      expect(listed).toEqual(names.slice(0, listed.length));
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      expect(rec.count('onBundleEnd')).toBe(120);
      await session.release();
    });
    await client.connection.close();
  });
});
