/**
 * Temporal caps the updates one workflow run may take (`history.maxTotalUpdates`, 2 000 by default) and
 * suggests continue-as-new at 90% of it. A restore asks the session for its files' targets (the tool library
 * gathers them, at most 64 files an update) and publishes each bundle, so a large restore lives on that
 * suggestion. Here the server's cap is 4 and it suggests at half, so a restore of 2 bundles × 20 big files
 * (the append, the targets, 2 publishes and the release: over 4 updates) must continue as new while files are
 * handed over (before, the run took updates until the cap and then hung), and still restore every bundle,
 * whole and once.
 */
import { mkdir, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { expect, it } from 'vitest';
import { runBackup } from '../../client/runs/runBackup.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { startDevServer } from '../../workers/devServer.js';
import { compareTrees } from '../helpers/compareTrees.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const NAMES = ['com.cap.one', 'com.cap.two'];
const FILES_PER_BUNDLE = 20;

/** How many runs the session had (each found from the one that followed it). */
async function sessionRuns(client: Client, sessionId: string): Promise<number> {
  let runs = 0;
  let runId: string | undefined;
  for (;;) {
    const { events = [] } = await client.workflow.getHandle(sessionId, runId).fetchHistory();
    runs++;
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!runId) return runs;
  }
}

it('a restore with more updates than the server allows one run continues as new and restores every bundle whole', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-cap-'));
  const source = path.join(root, 'device');
  for (const name of NAMES) await writeBundle(source, { name, files: { ...bigFiles(FILES_PER_BUNDLE, name.slice(-3)), 'small.txt': name } });
  const server = await startDevServer({
    headless: true,
    dbFile: path.join(root, 'temporal.db'),
    dynamicConfig: ['history.maxTotalUpdates=4', 'history.maxTotalUpdates.suggestContinueAsNewThreshold=0.5'],
  });
  const connection = await Connection.connect({ address: server.address });
  try {
    const setDir = path.join(root, 'set');
    const backupQueue = uniqueTaskQueue('cap-backup');
    configureTool(backupQueue, server.address);
    await withWorker({ taskQueue: backupQueue, dataRoot: source, stateDir: path.join(root, 'state-b'), address: server.address }, async () => {
      const r = await runBackup({ out: setDir });
      expect(r.outcome, JSON.stringify([r.error, r.bundles])).toBe('done');
    });

    const target = path.join(root, 'target');
    await mkdir(target);
    const restoreQueue = uniqueTaskQueue('cap-restore');
    configureTool(restoreQueue, server.address);
    const result = await withWorker({ taskQueue: restoreQueue, dataRoot: target, stateDir: path.join(root, 'state-r'), address: server.address }, () =>
      restoreFromSet({ from: setDir, bundles: NAMES }),
    );
    expect(result.bundles.map((b) => [b.bundleName, b.state, b.error?.message])).toEqual(NAMES.map((n) => [n, 'done', undefined]));
    for (const name of NAMES) expect(await compareTrees(path.join(source, name, 'data'), path.join(target, name, 'data'))).toEqual([]);
    expect(await sessionRuns(new Client({ connection }), result.sessionId), 'runs of the restore session').toBeGreaterThanOrEqual(2);
  } finally {
    await connection.close();
    await server.stop();
  }
}, 300_000);
