import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { freePort } from '../../workers/devServer.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue } from '../helpers/temporal.js';
import { startWorkerProcess } from '../helpers/workerProcess.js';

describe('worker metrics', () => {
  it('serves Prometheus metrics: Temporal runtime metrics and ohbackup bundles, files and bytes', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-metrics-'));
    const dataRoot = path.join(root, 'device');
    await writeBundle(dataRoot, { name: 'com.m.one', files: { ...bigFiles(2), 'a.txt': 'a' } });
    await writeBundle(dataRoot, { name: 'com.m.locked', config: { allowToBackupRestore: false } });
    const taskQueue = uniqueTaskQueue('metrics');
    configureTool(taskQueue);
    const address = `127.0.0.1:${await freePort()}`;
    const worker = await startWorkerProcess({ taskQueue, dataRoot, stateDir: path.join(root, 'state'), env: { OHBACKUP_METRICS_ADDRESS: address } });
    try {
      const rec = new Recorder();
      const session = new backup.SessionBackup(rec.callbacks);
      await session.appendBundles(['com.m.one', 'com.m.locked']);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await session.release();
      const text = await (await fetch(`http://${address}/metrics`)).text();
      const value = (pattern: RegExp) => Number(text.match(pattern)?.[1] ?? NaN);
      expect(value(/^ohbackup_files_handed_over_total\{[^}]*\} (\d+)/m)).toBe(4); // 2 big files, 1 slice, the index
      expect(value(/^ohbackup_bytes_handed_over_total\{[^}]*\} (\d+)/m)).toBeGreaterThan(4 * 1024 * 1024);
      expect(value(/^ohbackup_bundles_total\{[^}]*outcome="done"[^}]*\} (\d+)/m)).toBe(1);
      expect(value(/^ohbackup_bundles_total\{[^}]*outcome="failed"[^}]*\} (\d+)/m)).toBe(1);
      expect(text).toMatch(/^temporal_workflow_completed_total\{/m);
    } finally {
      await worker.kill('SIGTERM');
    }
  });
});
