import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { expectStartAndTotals, jsonSummary } from '../helpers/cliJson.js';
import { backup } from '../../client/index.js';
import { compareRestoredBundle } from '../helpers/compareTrees.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, temporalAddress, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function ohbackup(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('the ohbackup command line', () => {
  it('writes a sample device, backs it up into a verified set, and reports a session by ID', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-cli-'));
    const dataRoot = path.join(root, 'device');
    const made = await ohbackup(['sample-device', dataRoot, '--scale', '0.05', '--json'], {});
    expect(made.code, made.stderr).toBe(0);
    const taskQueue = uniqueTaskQueue('cli');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue };
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const out = path.join(root, 'set');
      const run = await ohbackup(['backup', '--out', out, '--json'], env);
      expect(run.code, run.stderr).toBe(0);
      const result = jsonSummary<{ sessionId: string; uiUrl: string; bundles: Array<{ bundleName: string; state: string }> }>(run.stdout, 'backup');
      expect(result.uiUrl).toContain(result.sessionId);
      // Off a terminal, under --json too: the session and its UI link on stderr when it starts.
      expect(expectStartAndTotals(run, { json: true })).toEqual([result.sessionId]);
      expect(result.bundles.map((b) => b.state)).toEqual(['done', 'done', 'done', 'done']);
      for (const b of result.bundles) expect(await compareBundleSet(out, dataRoot, b.bundleName)).toEqual([]);

      const status = await ohbackup(['status', result.sessionId, '--json'], env);
      expect(status.code, status.stderr).toBe(0);
      expect(jsonSummary(status.stdout, 'status')).toMatchObject({ status: 'COMPLETED' });

      // A partial failure is its own exit code.
      const partial = await ohbackup(['backup', '--out', path.join(root, 'set2'), 'com.example.docs', 'com.example.locked'], env);
      expect(partial.code, partial.stderr).toBe(3);
      expectStartAndTotals(partial, { json: false });
      // Bundles named: the device was asked for their capability file alone, which the set keeps.
      const caps = JSON.parse(await readFile(path.join(root, 'set2', 'capabilities.json'), 'utf8')) as { bundleInfos: Array<{ name: string }> };
      expect(caps.bundleInfos.map((b) => b.name).sort()).toEqual(['com.example.docs', 'com.example.locked']);
    });
  });

  it('restores a backup set onto a new data root (--to), identical to the source; refuses wrong usage', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-cli-restore-'));
    const dataRoot = path.join(root, 'device');
    const made = await ohbackup(['sample-device', dataRoot, '--scale', '0.05', '--json'], {});
    expect(made.code, made.stderr).toBe(0);
    const taskQueue = uniqueTaskQueue('cli-restore');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: path.join(root, 'state') };
    const out = path.join(root, 'set');
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const run = await ohbackup(['backup', '--out', out, '--json'], env);
      expect(run.code, run.stderr).toBe(0);
    });

    // No worker serves the device's queue now: --to brings its own for the new data root.
    const target = path.join(root, 'new-device');
    const restored = await ohbackup(['restore', '--from', out, '--to', target, '--json'], env);
    expect(restored.code, restored.stderr).toBe(0);
    const result = jsonSummary<{ sessionId: string; uiUrl: string; bundles: Array<{ bundleName: string; state: string }> }>(restored.stdout, 'restore');
    expect(result.uiUrl).toContain(result.sessionId);
    expect(expectStartAndTotals(restored, { json: true })).toEqual([result.sessionId]);
    expect(result.bundles.map((b) => b.state)).toEqual(['done', 'done', 'done', 'done']);
    for (const b of result.bundles) expect(await compareRestoredBundle(dataRoot, target, b.bundleName)).toEqual([]);
    // In words: its totals line.
    const words = await ohbackup(['restore', '--from', out, '--to', path.join(root, 'in-words'), 'com.example.docs'], env);
    expect(words.code, words.stderr).toBe(0);
    expectStartAndTotals(words, { json: false });

    const noFrom = await ohbackup(['restore', '--to', target], env);
    expect(noFrom.code).toBe(2);
    expect(noFrom.stderr).toMatch(/required option '--from <set>'/);
    const badMap = await ohbackup(['restore', '--from', out, '--to', target, '--map', 'bad'], env);
    expect(badMap.code).toBe(2);
    expect(badMap.stderr).toMatch(/expected old=new/);
    const notHeld = await ohbackup(['restore', '--from', out, '--to', target, 'com.example.absent'], env);
    expect(notHeld.code).toBe(2);
    expect(notHeld.stderr).toMatch(/does not hold bundle com\.example\.absent/);
  });

  it('steers a running session by ID: rate, timer, cancel, release', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-cli2-'));
    const dataRoot = path.join(root, 'device');
    const held = await writeBundle(dataRoot, { name: 'com.k.held', files: bigFiles(2), hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    await writeBundle(dataRoot, { name: 'com.k.later' });
    const taskQueue = uniqueTaskQueue('cli2');
    configureTool(taskQueue);
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue };
    const rec = new Recorder();
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const session = new backup.SessionBackup(rec.callbacks, { maxConcurrentBundles: 1 });
      await session.appendBundles(['com.k.held', 'com.k.later']);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin'));
      const id = session.sessionId;
      expect((await ohbackup(['rate', id, 'com.k.held', '0'], env)).stdout.trim()).toBe(`com.k.held in ${id}: paused (rate 0)`);
      expect((await ohbackup(['timer', id, 'com.k.held', '60000'], env)).stdout.trim()).toMatch(
        new RegExp(`^com\\.k\\.held in ${id}: deadline moved to \\d\\d:\\d\\d:\\d\\d UTC \\(in 1 min 00 s\\)$`),
      );
      const notRunning = await ohbackup(['timer', id, 'com.k.later', '1000'], env);
      expect([notRunning.code, notRunning.stdout.trim()]).toEqual([1, `com.k.later in ${id}: not running: its deadline was not moved`]);
      expect((await ohbackup(['cancel', id, 'com.k.later'], env)).stdout.trim()).toBe(`com.k.later in ${id}: not cancelled: it has not started yet (13500011)`);
      expect((await ohbackup(['timer', id, 'com.k.held', '99999999'], env)).code).toBe(2);
      await writeFile(path.join(held, 'go'), '');
      expect((await ohbackup(['cancel', id, 'com.k.held'], env)).stdout.trim()).toBe(`com.k.held in ${id}: cancel requested`);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleEnd' && x.bundleName === 'com.k.held'));
      const released = await ohbackup(['release', id, '--json'], env);
      expect(released.code, released.stderr).toBe(0);
      const outcome = jsonSummary<{ bundles: Array<{ bundleName: string; state: string }> }>(released.stdout, 'release');
      expect(outcome.bundles.find((b) => b.bundleName === 'com.k.held')?.state).toBe('cancelled');
      await expect(session.release()).rejects.toMatchObject({ code: 13900001 });
    });
    expect(rec.of('com.k.held').filter((c) => c.cb === 'onFileReady')).toHaveLength(0);
  });

  it('tells wrong usage apart (exit 2, a clear message)', async () => {
    const r = await ohbackup(['backup', '--out', '/tmp/x', '--nope'], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--nope'/);
    const s = await ohbackup(['status'], {});
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/missing required argument 'session-id'/);
  });
});
