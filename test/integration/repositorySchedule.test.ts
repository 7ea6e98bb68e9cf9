/**
 * A schedule that keeps a repository in shape: created through the command
 * line with `--repo ALIAS` (resolved by the real worker process from its own
 * environment, so no password travels), `--full-every 1`, `--keep-last 1`
 * and `--timeout`; three triggered runs: a full one, an increment of it, a
 * new full one, after which the policy forgets the first chain; pruned once
 * (at most daily). A repository string with credentials is refused.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteSchedule, triggerSchedule, waitForRun, type ScheduledRun } from '../../client/schedules.js';
import { findRestic, Repository } from '../../engine/repository/index.js';
import { writeBundle } from '../helpers/device.js';
import { configureTool, temporalAddress, testClient, uniqueTaskQueue } from '../helpers/temporal.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/workerProcess.js';
import { jsonSummary } from '../helpers/cliJson.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const NOTES = 'com.example.notes';

function ohbackup(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let root: string | undefined;
let worker: WorkerProcess | undefined;
afterAll(async () => {
  await worker?.kill();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('a schedule into a repository', () => {
  it('runs on the worker with the repository its environment names: full, increment, a new full after --full-every, keep policy, pruned once', async (ctx) => {
    try {
      await findRestic();
    } catch (err) {
      return ctx.skip(`no restic: ${(err as Error).message}`);
    }
    root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-repo-schedule-'));
    const dataRoot = path.join(root, 'device');
    const notes = path.join(await writeBundle(dataRoot, { name: NOTES, files: { 'a.txt': 'a', 'b.txt': randomBytes(4096).toString('hex') } }), 'data');
    const passwordFile = path.join(root, 'password');
    await writeFile(passwordFile, PASSWORD, { mode: 0o600 });
    const repoPath = path.join(root, 'repo');
    const repository = await Repository.init({ repository: repoPath, passwordFile });
    const taskQueue = uniqueTaskQueue('repo-schedule');
    configureTool(taskQueue);
    // The worker alone knows where "offsite" is and its password file.
    worker = await startWorkerProcess({
      taskQueue,
      dataRoot,
      stateDir: path.join(root, 'worker-state'),
      prebuiltWorkflows: true,
      env: { OHBACKUP_REPOSITORY_OFFSITE: repoPath, OHBACKUP_REPOSITORY_OFFSITE_PASSWORD_FILE: passwordFile },
    });
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: path.join(root, 'cli-state') };
    const id = `it-repo-${randomUUID().slice(0, 8)}`;

    const refused = await ohbackup(['schedule', 'create', `${id}-x`, '--repo', 'rest:https://u:secret@example.com/r', '--every', '1h'], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/user:password@/);
    expect(refused.stderr).not.toContain('secret');

    const created = await ohbackup(
      [
        'schedule',
        'create',
        id,
        '--repo',
        'offsite',
        '--incremental',
        '--full-every',
        '1',
        '--keep-last',
        '1',
        '--timeout',
        '30m',
        '--every',
        '24h',
        '--paused',
        '--json',
      ],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    expect(jsonSummary<{ request: unknown }>(created.stdout, 'schedule create').request).toEqual({
      dest: null,
      repository: 'offsite',
      keep: { keepLast: 1, keepDaily: null, keepWeekly: null, keepMonthly: null },
      fullEvery: 1,
      bundleTimeoutMs: 1_800_000,
      bundles: null,
      incremental: true,
      rate: null,
    });
    const run = async (): Promise<NonNullable<ScheduledRun['summary']>> => {
      const t = await triggerSchedule(id);
      if (t.skipped) throw new Error(`trigger skipped: ${t.reason}`);
      const r = await waitForRun(t.run);
      expect(r.status, r.error).toBe('COMPLETED');
      return r.summary!;
    };
    try {
      const s1 = await run();
      expect(s1).toMatchObject({ kind: 'incremental', outcome: 'done', repository: { name: repoPath, pruned: true, forgotten: [] } });
      await writeFile(path.join(notes, 'c.txt'), 'new');
      const s2 = await run();
      expect(s2.repository).toMatchObject({ baseSnapshot: s1.repository!.snapshot, pruned: false, forgotten: [] });
      // The chain has one increment: --full-every 1 makes the next run a new full one, and keep-last 1 forgets the old chain whole.
      const s3 = await run();
      expect(s3.repository?.baseSnapshot).toBeUndefined();
      expect(s3.repository?.forgotten?.sort()).toEqual([s1.repository!.snapshot, s2.repository!.snapshot].sort());
      expect(s3.repository?.pruned).toBe(false);
      expect((await repository.snapshots()).map((s) => s.id)).toEqual([s3.repository!.snapshot]);
      expect((await repository.check({ readData: true })).ok).toBe(true);

      const client = await testClient();
      for (const sessionId of [s1.sessionId, s2.sessionId, s3.sessionId]) {
        expect(JSON.stringify(await client.workflow.getHandle(sessionId).fetchHistory())).not.toContain(PASSWORD);
      }
      for await (const wf of client.workflow.list({ query: `WorkflowId STARTS_WITH "ohbackup-scheduled-${id}"` })) {
        const history = JSON.stringify(await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory());
        expect(history).not.toContain(PASSWORD);
        expect(history).not.toContain(passwordFile);
      }
    } finally {
      await deleteSchedule(id).catch(() => undefined);
    }
  }, 600_000);
});
