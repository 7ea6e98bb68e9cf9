import { createServer } from 'node:net';
import { readFile, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { createSchedule, deleteSchedule, triggerSchedule, waitForRun } from '../../client/schedules.js';
import { findRestic, Repository } from '../../engine/repository/index.js';
import { freePort } from '../../workers/devServer.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue } from '../helpers/temporal.js';
import { startWorkerProcess } from '../helpers/workerProcess.js';

const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));

/** The names of the series in a Prometheus text scrape (histograms as their _bucket, _sum and _count). */
function seriesNames(text: string): Set<string> {
  return new Set([...text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]!));
}

/** The label names of every ohbackup_ series. */
function ohbackupLabels(text: string): Set<string> {
  const out = new Set<string>();
  for (const [, labels] of text.matchAll(/^ohbackup_[a-z_]+\{([^}]*)\}/gm)) for (const [, k] of labels!.matchAll(/([^=,]+)="/g)) out.add(k!);
  return out;
}

describe('worker metrics', () => {
  it('serves Prometheus metrics during and after a run: outcomes by kind and device, durations, last success, bytes; the docs name only these', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-metrics-'));
    const dataRoot = path.join(root, 'device');
    await writeBundle(dataRoot, { name: 'com.m.one', files: { ...bigFiles(2), 'a.txt': 'a' } });
    // One its child refuses (not backup-able), one whose child fails (its hook crashes).
    await writeBundle(dataRoot, { name: 'com.m.locked', config: { allowToBackupRestore: false } });
    await writeBundle(dataRoot, { name: 'com.m.crash', hooks: { onBackup: 'exit 7' } });
    const taskQueue = uniqueTaskQueue('metrics');
    configureTool(taskQueue);
    // A repository for one scheduled run (what it adds is counted), where restic is found.
    const restic = await findRestic().then(
      () => true,
      (err: Error) => (console.warn(`metrics: no scheduled run into a repository: ${err.message}`), false),
    );
    const repoPath = path.join(root, 'repo');
    const passwordFile = path.join(root, 'repo-password');
    if (restic) {
      await writeFile(passwordFile, 'metrics', { mode: 0o600 });
      await Repository.init({ repository: repoPath, passwordFile });
    }
    const address = `127.0.0.1:${await freePort()}`;
    const worker = await startWorkerProcess({
      taskQueue,
      dataRoot,
      stateDir: path.join(root, 'state'),
      prebuiltWorkflows: true,
      env: {
        OHBACKUP_METRICS_ADDRESS: address,
        OHBACKUP_LOG_FORMAT: 'json',
        OHBACKUP_REPOSITORY_METRICS: repoPath,
        OHBACKUP_REPOSITORY_METRICS_PASSWORD_FILE: passwordFile,
      },
    });
    const scrape = async () => (await fetch(`http://${address}/metrics`)).text();
    const value = (text: string, pattern: RegExp) => Number(text.match(pattern)?.[1] ?? NaN);
    try {
      const rec = new Recorder();
      const session = new backup.SessionBackup(rec.callbacks);
      const startedAt = Date.now() / 1000;
      await session.appendBundles(['com.m.one', 'com.m.locked', 'com.m.crash']);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));

      // During the run: every bundle has ended, the session not yet.
      const during = await scrape();
      const device = `device="${taskQueue}"`;
      expect(value(during, /^ohbackup_files_handed_over_total\{[^}]*\} (\d+)/m)).toBe(4); // 2 big files, 1 slice, the index
      expect(value(during, /^ohbackup_bytes_handed_over_total\{[^}]*\} (\d+)/m)).toBeGreaterThan(4 * 1024 * 1024);
      expect(during).toMatch(new RegExp(`^ohbackup_bytes_handed_over_total\\{[^}]*${device}`, 'm'));
      expect(value(during, /^ohbackup_bundles_total\{[^}]*outcome="done"[^}]*\} (\d+)/m)).toBe(1);
      // The refused one (13500001) and the crashed one (13500004), by error code.
      expect(value(during, /^ohbackup_bundles_total\{[^}]*error_code="13500001"[^}]*outcome="failed"[^}]*\} (\d+)/m)).toBe(1);
      expect(value(during, /^ohbackup_bundles_total\{[^}]*error_code="13500004"[^}]*outcome="failed"[^}]*\} (\d+)/m)).toBe(1);
      expect(during).toMatch(new RegExp(`^ohbackup_bundles_total\\{[^}]*${device}[^}]*kind="backup"`, 'm'));
      expect(value(during, /^ohbackup_bundle_duration_seconds_count\{[^}]*outcome="done"[^}]*\} (\d+)/m)).toBe(1);
      expect(during).toMatch(/^ohbackup_bundle_duration_seconds_bucket\{[^}]*le="3600"[^}]*\} 1$/m);
      const lastSuccess = value(during, /^ohbackup_last_success_timestamp_seconds\{[^}]*bundle_name="com\.m\.one"[^}]*\} ([\d.e+]+)/m);
      expect(lastSuccess).toBeGreaterThanOrEqual(Math.floor(startedAt));
      expect(lastSuccess).toBeLessThanOrEqual(Date.now() / 1000 + 1);
      expect(during).not.toMatch(/bundle_name="com\.m\.(locked|crash)"/);
      // com.m.one's hand-over waited for the tool's begun mark, and the mark (the child's query, in this worker) woke it:
      // no ask of the child, no wait to the bound. The other two never reached a hand-over.
      expect(value(during, /^ohbackup_tool_begun_wait_seconds_count\{[^}]*ended_by="mark"[^}]*\} (\d+)/m)).toBe(1);
      expect(during).toMatch(new RegExp(`^ohbackup_tool_begun_wait_seconds_count\\{[^}]*${device}[^}]*ended_by="mark"`, 'm'));
      expect(during).not.toMatch(/^ohbackup_tool_begun_wait_seconds_count\{[^}]*ended_by="(ask|bound)"/m);
      expect(during).not.toMatch(/^ohbackup_sessions_total/m);

      // A second session asks for a bundle the first still holds: refused before any child starts (13500013).
      const rec2 = new Recorder();
      const second = new backup.SessionBackup(rec2.callbacks);
      await second.appendBundles(['com.m.one']);
      await rec2.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      expect(rec2.calls.find((c) => c.cb === 'onBundleEnd')?.code).toBe(13500013);
      await second.release();
      await session.release();

      // A scheduled run into the repository: the bytes its snapshot added, by repository.
      let added: number | undefined;
      if (restic) {
        const scheduleId = `metrics-${process.pid}`;
        await createSchedule({ scheduleId, every: '24h', paused: true, repository: 'metrics', bundles: ['com.m.one'], incremental: false, taskQueue });
        try {
          const t = await triggerSchedule(scheduleId);
          if (t.skipped) throw new Error(`trigger skipped: ${t.reason}`);
          const run = await waitForRun(t.run);
          expect(run.status, run.error).toBe('COMPLETED');
          added = run.summary?.repository?.dataAdded;
          expect(added).toBeGreaterThan(0);
        } finally {
          await deleteSchedule(scheduleId).catch(() => undefined);
        }
      }
      const after = await scrape();
      if (restic) {
        const repoLabel = `repository="${repoPath.replace(/[.\\]/g, '\\$&')}"`;
        expect(value(after, new RegExp(`^ohbackup_repository_bytes_added_total\\{[^}]*${repoLabel}[^}]*\\} (\\d+)`, 'm'))).toBe(added);
      }
      expect(value(after, /^ohbackup_bundles_total\{[^}]*error_code="13500013"[^}]*outcome="failed"[^}]*\} (\d+)/m)).toBe(1);
      expect(value(after, /^ohbackup_sessions_total\{[^}]*outcome="failed"[^}]*\} (\d+)/m)).toBe(1);
      expect(value(after, /^ohbackup_sessions_total\{[^}]*outcome="partial"[^}]*\} (\d+)/m)).toBe(1);
      expect(value(after, /^ohbackup_session_duration_seconds_count\{[^}]*outcome="partial"[^}]*\} (\d+)/m)).toBe(1);
      expect(after).toMatch(/^temporal_workflow_completed_total\{/m);
      // Label names as Temporal's own: snake_case.
      for (const label of ohbackupLabels(after)) expect(label).toMatch(/^[a-z]+(_[a-z]+)*$/);

      // Every metric the shipped dashboard and alert rules use is served (`up` is Prometheus' own; the repository's only where restic runs).
      const served = seriesNames(after);
      if (!restic) served.add('ohbackup_repository_bytes_added_total');

      for (const file of ['grafana-dashboard.json', 'prometheus-alerts.yml']) {
        const text = await readFile(path.join(DOCS, file), 'utf8');
        if (file.endsWith('.json')) JSON.parse(text);
        const used = new Set([...text.matchAll(/\b((?:ohbackup|temporal)_[a-z0-9_]+)/g)].map((m) => m[1]!));
        expect(used.size, file).toBeGreaterThan(3);
        expect(
          [...used].filter((name) => !served.has(name)),
          `${file} names metrics the worker does not serve`,
        ).toEqual([]);
      }
    } finally {
      await worker.kill('SIGTERM');
    }
    // The worker said where it serves them; its log (read once it has exited: all of it) is one JSON object a line, one per bundle end.
    const lines = worker.output().split('\n');
    const entries = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.find((e) => e.message === `serving Prometheus metrics at http://${address}/metrics`)).toMatchObject({ level: 'INFO' });
    expect(entries.filter((e) => e.message === 'bundle ended').map((e) => [e.bundleName, e.outcome, e.errorCode ?? null])).toEqual(
      expect.arrayContaining([
        ['com.m.one', 'done', null],
        ['com.m.locked', 'failed', 13500001],
        ['com.m.crash', 'failed', 13500004],
      ]),
    );
    expect(entries.filter((e) => e.message === 'session ended').map((e) => [e.outcome, e.bundles])).toEqual([
      ['failed', 1],
      ['partial', 3],
      ...(restic ? [['done', 1]] : []),
    ]);
    expect(lines.filter((l) => l && !l.startsWith('{') && !l.startsWith('ohbackup worker ready'))).toEqual([]);
  });

  it('a bad OHBACKUP_METRICS_ADDRESS stops the worker with a message naming it', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-metrics-bad-'));
    const opts = {
      taskQueue: uniqueTaskQueue('metrics-bad'),
      dataRoot: path.join(root, 'device'),
      stateDir: path.join(root, 'state'),
      prebuiltWorkflows: true,
    };
    await expect(startWorkerProcess({ ...opts, env: { OHBACKUP_METRICS_ADDRESS: 'localhost' } })).rejects.toThrow(
      /The worker failed: OHBACKUP_METRICS_ADDRESS must be host:port .*\(got "localhost"\)/,
    );
    // A port another process holds.
    const busy = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    const taken = `127.0.0.1:${(busy.address() as { port: number }).port}`;
    try {
      await expect(startWorkerProcess({ ...opts, env: { OHBACKUP_METRICS_ADDRESS: taken } })).rejects.toThrow(
        new RegExp(`The worker failed: OHBACKUP_METRICS_ADDRESS=${taken}: cannot serve metrics there`),
      );
    } finally {
      busy.close();
    }
  });
});
