import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSummary } from '../helpers/cliJson.js';
import { readSetInfo } from '../../client/sets/layout.js';
import {
  createSchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  triggerSchedule,
  waitForRun,
  ScheduleError,
  type ScheduleListing,
} from '../../client/schedules.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import { OhbackupKind, OhbackupState } from '../../common/searchAttributes.js';
import { compareTrees } from '../helpers/compareTrees.js';
import { writeBundle } from '../helpers/device.js';
import { configureTool, temporalAddress, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function ohbackup(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const indexOf = (set: string, bundle: string) => JSON.parse(readFileSync(path.join(set, bundle, 'manage.json'), 'utf8')) as ManageIndex;
const handedFiles = (index: ManageIndex) => index.files.flatMap((f) => f.entries.filter((e) => e.kind === 'file').map((e) => e.path)).sort();

/** Temporal lists schedules eventually consistently: ask until `ok` holds (bounded), not for a fixed time. */
async function listUntil(ok: (rows: ScheduleListing[]) => boolean): Promise<ScheduleListing[]> {
  let rows: ScheduleListing[] = [];
  for (let i = 0; i < 100; i++) {
    rows = await listSchedules();
    if (ok(rows)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return rows;
}

const NOTES = 'com.sched.notes';
const DOCS = 'com.sched.docs';

describe('ohbackup schedule (Temporal Schedules)', () => {
  it('runs a full backup, then an increment chained to it; the sets verify; list and describe show the runs', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-schedule-'));
    const dataRoot = path.join(root, 'device');
    const stateDir = path.join(root, 'state');
    const dest = path.join(root, 'sets');
    const notes = path.join(
      await writeBundle(dataRoot, { name: NOTES, files: { 'keep.txt': 'unchanged', 'edit.txt': 'old', 'gone.txt': 'deleted later', 'd/x.txt': 'x' } }),
      'data',
    );
    await writeBundle(dataRoot, { name: DOCS, files: { 'a.md': '# a' } });
    // In the past, so the edits below get new mtimes.
    const past = new Date(Date.now() - 3600_000);
    for (const f of ['keep.txt', 'edit.txt', 'gone.txt', 'd/x.txt']) await utimes(path.join(notes, f), past, past);

    const taskQueue = uniqueTaskQueue('schedule');
    configureTool(taskQueue);
    const client = await testClient();
    const id = `it-nightly-${randomUUID().slice(0, 8)}`;
    let increment = '';
    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      // Paused, with a real nightly time: only the triggers below start runs.
      const created = await createSchedule({
        scheduleId: id,
        dest,
        bundles: [NOTES, DOCS],
        incremental: true,
        cron: '0 2 * * *',
        paused: true,
        note: 'integration test',
        taskQueue,
      });
      expect(created).toMatchObject({ scheduleId: id, paused: true, note: 'integration test', when: 'cron 0 2 * * *', overlap: 'SKIP', taskQueue });
      expect(created.request).toEqual({ dest, bundles: [NOTES, DOCS], incremental: true });
      await expect(createSchedule({ scheduleId: id, dest, incremental: true, every: '1h' })).rejects.toMatchObject({ kind: 'exists' });

      // 1. The first run finds no set in the destination: a full backup that keeps manifests.
      const t1 = await triggerSchedule(id);
      if (t1.skipped) throw new Error(`first trigger skipped: ${t1.reason}`);
      const run1 = await waitForRun(t1.run);
      expect(run1.status, run1.error).toBe('COMPLETED');
      const s1 = run1.summary!;
      expect(s1).toMatchObject({ kind: 'incremental', outcome: 'done' });
      expect(s1.base).toBeUndefined();
      expect(path.dirname(s1.set)).toBe(dest);
      expect(s1.bundles.map((b) => [b.bundleName, b.state])).toEqual([
        [NOTES, 'done'],
        [DOCS, 'done'],
      ]);
      for (const b of [NOTES, DOCS]) expect(await compareBundleSet(s1.set, dataRoot, b), b).toEqual([]);

      // The run's session is an ordinary session workflow, with its search attributes.
      const session = await client.workflow.getHandle(s1.sessionId).describe();
      expect(session.type).toBe('sessionWorkflow');
      expect(session.typedSearchAttributes.get(OhbackupKind)).toBe('incremental');
      expect(session.typedSearchAttributes.get(OhbackupState)).toBe('released');

      // 2. Change the device; the second run is an increment of the first set.
      await writeFile(path.join(notes, 'edit.txt'), 'new content, longer');
      await writeFile(path.join(notes, 'new.txt'), 'a new file');
      await rm(path.join(notes, 'gone.txt'));
      const t2 = await triggerSchedule(id);
      if (t2.skipped) throw new Error(`second trigger skipped: ${t2.reason}`);
      const run2 = await waitForRun(t2.run);
      expect(run2.status, run2.error).toBe('COMPLETED');
      const s2 = run2.summary!;
      expect(s2).toMatchObject({ kind: 'incremental', outcome: 'done', base: s1.set });
      expect(s2.set).not.toBe(s1.set);
      increment = s2.set;
      expect(readSetInfo(s2.set)).toMatchObject({ kind: 'incremental', base: s1.set, done: [NOTES, DOCS] });
      const inc = indexOf(s2.set, NOTES);
      expect(handedFiles(inc)).toEqual(['edit.txt', 'new.txt']);
      expect(inc.incremental!.deleted.map((d) => d.path)).toEqual(['gone.txt']);
      expect(handedFiles(indexOf(s2.set, DOCS))).toEqual([]);
      expect((await readdir(dest)).sort()).toEqual([path.basename(s1.set), path.basename(s2.set)].sort());

      // describe: both runs with their results, the next nightly times; list shows it too.
      const described = await describeSchedule(id);
      expect(described.actionsTaken).toBe(2);
      expect(described.recentRuns.map((r) => [r.workflowId, r.status, r.summary?.set])).toEqual([
        [run1.workflowId, 'COMPLETED', s1.set],
        [run2.workflowId, 'COMPLETED', s2.set],
      ]);
      expect(described.running).toEqual([]);
      const listed = await listUntil((rows) => rows.some((r) => r.scheduleId === id && r.lastRun?.workflowId === run2.workflowId));
      expect(listed.find((r) => r.scheduleId === id)).toMatchObject({
        when: 'cron 0 2 * * *',
        paused: true,
        request: { dest, incremental: true },
        lastRun: { status: 'COMPLETED' },
      });

      await deleteSchedule(id);
      await expect(describeSchedule(id)).rejects.toBeInstanceOf(ScheduleError);
      await expect(triggerSchedule(id)).rejects.toMatchObject({ kind: 'notFound' });
    });

    // 3. The chain restores to exactly the device: full set, then the increment.
    const target = path.join(root, 'restored');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_STATE_DIR: stateDir };
    const restored = await ohbackup(['restore', '--from', increment, '--to', target, '--json'], env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(jsonSummary<{ sets: Array<{ from: string }> }>(restored.stdout, 'restore').sets).toHaveLength(2);
    for (const b of [NOTES, DOCS]) expect(await compareTrees(path.join(dataRoot, b, 'data'), path.join(target, b, 'data')), b).toEqual([]);
  });

  it('skips a run due while the previous one is still in progress (overlap policy SKIP)', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-schedule-skip-'));
    const dataRoot = path.join(root, 'device');
    // The bundle's backup hook waits for a file the test writes: the first run is in progress until then.
    const held = await writeBundle(dataRoot, { name: 'com.sched.held', hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    const taskQueue = uniqueTaskQueue('schedule-skip');
    configureTool(taskQueue);
    const id = `it-skip-${randomUUID().slice(0, 8)}`;
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      await createSchedule({ scheduleId: id, dest: path.join(root, 'sets'), incremental: false, every: '365d', paused: true, taskQueue });
      const first = await triggerSchedule(id);
      if (first.skipped) throw new Error(`first trigger skipped: ${first.reason}`);
      try {
        const second = await triggerSchedule(id);
        expect(second).toMatchObject({ skipped: true, reason: expect.stringMatching(/still in progress/) });
        const during = await describeSchedule(id);
        expect(during.running).toEqual([first.run.workflowId]);
        expect(during.skippedOverlap).toBe(1);
      } finally {
        // Let the first run end whatever happened, so the worker can stop.
        await writeFile(path.join(held, 'go'), '');
      }
      const run = await waitForRun(first.run);
      expect(run.status, run.error).toBe('COMPLETED');
      expect(run.summary).toMatchObject({ kind: 'backup', outcome: 'done' });
      expect(await compareBundleSet(run.summary!.set, dataRoot, 'com.sched.held')).toEqual([]);
      await deleteSchedule(id);
    });
  });

  it('a trigger in the same second as the last run still starts a run (run IDs end in the second they start)', async () => {
    // Overlap ALLOW_ALL and a queue no worker polls: every trigger starts a run that stays running, none is skipped.
    configureTool(uniqueTaskQueue('same-second'));
    const client = await testClient();
    const id = `it-same-second-${randomUUID().slice(0, 8)}`;
    await client.schedule.create({
      scheduleId: id,
      spec: { intervals: [{ every: '365d' }] },
      state: { paused: true },
      policies: { overlap: 'ALLOW_ALL' },
      action: { type: 'startWorkflow', workflowType: 'sessionWorkflow', taskQueue: uniqueTaskQueue('never-polled'), args: [] },
    });
    try {
      // Start at the top of a second, so the second trigger falls in the first one's second unless it waits.
      await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000)));
      const runs: string[] = [];
      for (let i = 0; i < 3; i++) {
        const t = await triggerSchedule(id, 10_000);
        if (t.skipped) throw new Error(`trigger ${i} skipped: ${t.reason}`);
        runs.push(t.run.workflowId);
      }
      expect(new Set(runs).size).toBe(3);
    } finally {
      const d = await client.schedule.getHandle(id).describe();
      for (const r of d.info.runningActions)
        await client.workflow
          .getHandle(r.workflow.workflowId)
          .terminate('test over')
          .catch(() => undefined);
      await client.schedule.getHandle(id).delete();
    }
  });

  it('the command line: create, list, describe, delete with --json; clear errors and exit codes', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-schedule-cli-'));
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: uniqueTaskQueue('schedule-cli') };
    const id = `it-cli-${randomUUID().slice(0, 8)}`;
    const dest = path.join(root, 'sets');

    const created = await ohbackup(
      ['schedule', 'create', id, '--dest', dest, '--bundles', 'com.a.one,com.a.two', '--every', '24h', '--incremental', '--paused', '--json'],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    expect(jsonSummary(created.stdout, 'schedule create')).toMatchObject({
      scheduleId: id,
      when: 'every 24h',
      paused: true,
      overlap: 'SKIP',
      request: { dest, bundles: ['com.a.one', 'com.a.two'], incremental: true },
      taskQueue: env.OHBACKUP_TASK_QUEUE,
      recentRuns: [],
    });

    const again = await ohbackup(['schedule', 'create', id, '--dest', dest, '--every', '1h'], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`a schedule "${id}" already exists`));

    // The listing is eventually consistent: ask until it shows the new schedule (bounded).
    let rows: Array<{ scheduleId: string; when: string; paused: boolean }> = [];
    for (let i = 0; i < 50 && !rows.some((r) => r.scheduleId === id); i++) {
      const list = await ohbackup(['schedule', 'list', '--json'], env);
      expect(list.code, list.stderr).toBe(0);
      rows = jsonSummary<{ schedules: typeof rows }>(list.stdout, 'schedule list').schedules;
    }
    expect(rows.find((r) => r.scheduleId === id)).toMatchObject({ when: 'every 24h', paused: true });

    const unpaused = await ohbackup(['schedule', 'unpause', id, '--json'], env);
    expect(unpaused.code, unpaused.stderr).toBe(0);
    const view = jsonSummary<{ paused: boolean; nextRuns: string[] }>(unpaused.stdout, 'schedule unpause');
    expect(view.paused).toBe(false);
    expect(view.nextRuns.length).toBeGreaterThan(0);
    const described = await ohbackup(['schedule', 'describe', id], env);
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/Overlap +SKIP/);
    expect(described.stdout).toMatch(/Next runs +\d{4}-/);

    const deleted = await ohbackup(['schedule', 'delete', id, '--json'], env);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(jsonSummary(deleted.stdout, 'schedule delete')).toMatchObject({ scheduleId: id, deleted: true });

    const unknown = await ohbackup(['schedule', 'describe', id], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(new RegExp(`no schedule "${id}"`));

    // Wrong usage: exit 2 and a message that says what is wrong.
    const both = await ohbackup(['schedule', 'create', 'x', '--dest', dest, '--cron', '0 2 * * *', '--every', '1h'], env);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/exactly one of --cron .* and --every/);
    const noDest = await ohbackup(['schedule', 'create', 'x', '--every', '1h'], env);
    expect(noDest.code).toBe(2);
    expect(noDest.stderr).toMatch(/required option '--dest <dir>'/);
    const badEvery = await ohbackup(['schedule', 'create', 'x', '--dest', dest, '--every', 'soon'], env);
    expect(badEvery.code).toBe(2);
    expect(badEvery.stderr).toMatch(/--every "soon" is not an interval/);
    const badCron = await ohbackup(['schedule', 'create', `it-bad-${randomUUID().slice(0, 8)}`, '--dest', dest, '--cron', 'every night'], env);
    expect(badCron.code).toBe(2);
    expect(badCron.stderr).toMatch(/refused the schedule/);
    const noSub = await ohbackup(['schedule', 'frobnicate'], env);
    expect(noSub.code).toBe(2);
    expect(noSub.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});
