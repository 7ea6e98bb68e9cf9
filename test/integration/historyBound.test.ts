import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { bundleWorkflowId } from '../../common/session.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

describe('workflow histories stay bounded', () => {
  it('a session of 20 000 small files keeps every history under 10 000 events', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-history-'));
    const dataRoot = path.join(root, 'device');
    const bundleRoot = await writeBundle(dataRoot, { name: 'com.h.many', files: {} });
    for (let d = 0; d < 100; d++) {
      const dir = path.join(bundleRoot, 'data', `d${d}`);
      await mkdir(dir, { recursive: true });
      await Promise.all(Array.from({ length: 200 }, (_, f) => writeFile(path.join(dir, `f${f}.txt`), `${d}/${f}\n`)));
    }
    const taskQueue = uniqueTaskQueue('history');
    configureTool(taskQueue);
    const rec = new Recorder();
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const session = new backup.SessionBackup(rec.callbacks);
      await session.appendBundles(['com.h.many']);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      const result = JSON.parse(rec.of('com.h.many').find((c) => c.cb === 'onResultReport')!.payload!) as { files: number };
      expect(result.files).toBe(20_000);
      await session.release();
      for (const id of [session.sessionId, bundleWorkflowId(session.sessionId, 'com.h.many')]) {
        const history = await client.workflow.getHandle(id).fetchHistory();
        expect(history.events?.length ?? 0, id).toBeLessThan(10_000);
      }
    });
    await client.connection.close();
  });
});
