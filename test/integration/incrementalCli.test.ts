import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSummary } from '../helpers/cliJson.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import { compareTrees } from '../helpers/compareTrees.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { temporalAddress, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function ohbackup(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

interface SetSummary {
  kind: string;
  time: number;
  base?: string;
  bundles: Array<{ bundleName: string; state: string }>;
}
const summaryOf = (set: string) => JSON.parse(readFileSync(path.join(set, 'backup_set.json'), 'utf8')) as SetSummary;
const indexOf = (set: string, bundle: string) => JSON.parse(readFileSync(path.join(set, bundle, 'manage.json'), 'utf8')) as ManageIndex;
/** The files an index hands over (tar slice entries and big files alike). */
const handedFiles = (index: ManageIndex) => index.files.flatMap((f) => f.entries.filter((e) => e.kind === 'file').map((e) => e.path)).sort();
const manifestHeader = (set: string, bundle: string) =>
  JSON.parse(readFileSync(path.join(set, bundle, 'manifest.jsonl'), 'utf8').split('\n')[0]!) as { bundleName: string; time: number };

const ALPHA = 'com.inc.alpha';
const BETA = 'com.inc.beta';

describe('ohbackup backup --incremental / --base and chain restore', () => {
  it('backs up a full set, two increments on it, and restores the chain onto an empty data root identical to the device', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-inc-cli-'));
    const dataRoot = path.join(root, 'device');
    const stateDir = path.join(root, 'state');
    const alpha = path.join(
      await writeBundle(dataRoot, {
        name: ALPHA,
        files: {
          'keep.txt': 'unchanged',
          'edit.txt': 'old content',
          'touch.txt': 'same bytes, new time',
          'gone.txt': 'deleted in the first increment',
          'olddir/x.txt': 'in a folder deleted in the first increment',
          'olddir/sub/y.txt': 'deeper',
          'ren-src.txt': 'renamed in the first increment',
          'docs/readme.md': '# docs',
          ...bigFiles(1, 'big'),
        },
      }),
      'data',
    );
    const beta = path.join(await writeBundle(dataRoot, { name: BETA, files: { 'b1.txt': 'one', 'b2/c.txt': 'two' } }), 'data');
    // Everything a little in the past, so no change below can share a timestamp with the original.
    const past = new Date(Date.now() - 3600_000);
    for (const f of ['keep.txt', 'edit.txt', 'touch.txt', 'gone.txt', 'olddir/x.txt', 'olddir/sub/y.txt', 'ren-src.txt', 'docs/readme.md', 'big0.bin']) {
      await utimes(path.join(alpha, f), past, past);
    }

    const taskQueue = uniqueTaskQueue('inc-cli');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: stateDir };
    const full = path.join(root, 'full');
    const inc1 = path.join(root, 'inc1');
    const inc2 = path.join(root, 'inc2');

    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      // 1. An incremental session without a base: a full backup that keeps each bundle's manifest.
      const f = await ohbackup(['backup', '--incremental', '--out', full, '--json'], env);
      expect(f.code, f.stderr).toBe(0);
      expect(jsonSummary<{ kind: string }>(f.stdout, 'backup').kind).toBe('incremental');
      const fullSummary = summaryOf(full);
      expect(fullSummary).toMatchObject({ kind: 'incremental' });
      expect(fullSummary.base).toBeUndefined();
      expect(Number.isInteger(fullSummary.time)).toBe(true);
      expect(fullSummary.bundles.map((b) => [b.bundleName, b.state])).toEqual([
        [ALPHA, 'done'],
        [BETA, 'done'],
      ]);
      for (const b of [ALPHA, BETA]) {
        expect(indexOf(full, b).incremental).toBeUndefined();
        expect(manifestHeader(full, b).bundleName).toBe(b);
      }
      expect(handedFiles(indexOf(full, ALPHA))).toContain('big0.bin');

      // 2. Change the device: edit, touch (same bytes), add, delete a file and a folder, rename.
      await writeFile(path.join(alpha, 'edit.txt'), 'new content, longer than before');
      const touched = new Date(Date.now() + 60_000);
      await utimes(path.join(alpha, 'touch.txt'), touched, touched);
      await writeFile(path.join(alpha, 'new.txt'), 'a new file');
      await mkdir(path.join(alpha, 'newdir'));
      await writeFile(path.join(alpha, 'newdir/n.txt'), 'a new file in a new folder');
      await rm(path.join(alpha, 'gone.txt'));
      await rm(path.join(alpha, 'olddir'), { recursive: true });
      await rename(path.join(alpha, 'ren-src.txt'), path.join(alpha, 'ren-dst.txt'));

      const i1 = await ohbackup(['backup', '--base', full, '--out', inc1, '--json'], env);
      expect(i1.code, i1.stderr).toBe(0);
      // The increment in restic's words: new / changed / deleted / touched / unmodified files against the base.
      const i1Json = jsonSummary<{ bundles: Array<{ bundleName: string; increment: unknown; entries: number }> }>(i1.stdout, 'backup');
      expect(i1Json.bundles.map((x) => [x.bundleName, x.increment])).toEqual([
        [ALPHA, { new: 3, changed: 1, deleted: 3, touched: 1, unmodified: 3 }],
        [BETA, { new: 0, changed: 0, deleted: 0, touched: 0, unmodified: 2 }],
      ]);
      const inc1Summary = summaryOf(inc1);
      expect(inc1Summary).toMatchObject({ kind: 'incremental', base: full });
      expect(inc1Summary.time).toBeGreaterThanOrEqual(fullSummary.time);
      expect(inc1Summary.bundles.every((b) => b.state === 'done')).toBe(true);
      const a1 = indexOf(inc1, ALPHA);
      // Only new and changed files were handed over: not the touched one, nor the unchanged big file.
      expect(handedFiles(a1)).toEqual(['edit.txt', 'new.txt', 'newdir/n.txt', 'ren-dst.txt']);
      expect(a1.incremental).toBeDefined();
      expect(a1.incremental!.deleted.map((d) => d.path).sort()).toEqual(['gone.txt', 'olddir', 'ren-src.txt']);
      const b1 = indexOf(inc1, BETA);
      expect(b1.incremental).toBeDefined();
      expect(handedFiles(b1)).toEqual([]);
      expect(b1.incremental!.deleted).toEqual([]);
      expect(manifestHeader(inc1, ALPHA).bundleName).toBe(ALPHA);

      // 3. Change again, in both bundles, and back up on the first increment.
      await writeFile(path.join(alpha, 'new.txt'), 'edited in the second increment');
      await rm(path.join(alpha, 'newdir/n.txt'));
      await writeFile(path.join(alpha, 'docs/late.md'), 'added in the second increment');
      await chmod(path.join(alpha, 'keep.txt'), 0o600);
      await writeFile(path.join(beta, 'b3.txt'), 'three');
      await rm(path.join(beta, 'b2'), { recursive: true });

      const i2 = await ohbackup(['backup', '--base', inc1, '--out', inc2], env);
      expect(i2.code, i2.stderr).toBe(0);
      // The table says it too, with the run's totals, elapsed time and throughput.
      expect(i2.stdout).toMatch(/new +changed +deleted +touched +unmodified/);
      expect(i2.stdout).toMatch(new RegExp(`${ALPHA.replace(/\./g, '\\.')} +done +\\d+ +[\\d.]+ \\S+ +\\d+ +[\\d.]+ \\S+ +1 +1 +1 +1 +5\\b`));
      expect(i2.stdout).toMatch(/Total +\d+ entries, .* of data; \d+ set files handed over, .* in [\d.]+ (ms|s), .*\/s/);
      expect(summaryOf(inc2)).toMatchObject({ kind: 'incremental', base: inc1 });
      expect(handedFiles(indexOf(inc2, ALPHA))).toEqual(['docs/late.md', 'new.txt']);
      expect(indexOf(inc2, ALPHA).incremental!.deleted.map((d) => d.path)).toEqual(['newdir/n.txt']);
      expect(handedFiles(indexOf(inc2, BETA))).toEqual(['b3.txt']);
      expect(indexOf(inc2, BETA).incremental!.deleted.map((d) => d.path)).toEqual(['b2']);
    });

    // 4. Restore the newest increment: its chain full → inc1 → inc2, onto an empty data root, with the command's own worker.
    const empty = path.join(root, 'empty');
    const r = await ohbackup(['restore', '--from', inc2, '--to', empty, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const result = jsonSummary<{
      sessionId: string;
      bundles: Array<{ bundleName: string; state: string }>;
      sets: Array<{ from: string; sessionId: string; bundles: Array<{ bundleName: string; state: string }> }>;
    }>(r.stdout, 'restore');
    expect(result.sets.map((s) => s.from)).toEqual([full, inc1, inc2]);
    expect(result.sessionId).toBe(result.sets[2]!.sessionId);
    for (const s of result.sets)
      expect(s.bundles.map((b) => [b.bundleName, b.state])).toEqual([
        [ALPHA, 'done'],
        [BETA, 'done'],
      ]);
    expect(result.bundles.map((b) => [b.bundleName, b.state])).toEqual([
      [ALPHA, 'done'],
      [BETA, 'done'],
    ]);
    for (const b of [ALPHA, BETA]) {
      expect(await compareTrees(path.join(dataRoot, b, 'data'), path.join(empty, b, 'data')), b).toEqual([]);
    }
    expect((await stat(path.join(empty, ALPHA, 'data', 'keep.txt'))).mode & 0o777).toBe(0o600);
  });

  it('refuses a --base that is no backup set, and a chain with a missing base or a loop (exit 2)', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-inc-cli-usage-'));
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: uniqueTaskQueue('inc-usage'), OHBACKUP_STATE_DIR: path.join(root, 'state') };

    const noBase = await ohbackup(['backup', '--base', path.join(root, 'nowhere'), '--out', path.join(root, 'out')], env);
    expect(noBase.code).toBe(2);
    expect(noBase.stderr).toMatch(/--base .*nowhere is not a backup set/);

    // Hand-made sets: only backup_set.json and capabilities.json matter before anything starts.
    const fakeSet = async (dir: string, base?: string) => {
      await mkdir(dir, { recursive: true });
      const summary = {
        version: 1,
        sessionId: 'x',
        kind: 'incremental',
        createdAt: new Date().toISOString(),
        time: 1,
        base,
        bundles: [{ bundleName: ALPHA, state: 'done', files: 1, bytes: 1 }],
      };
      await writeFile(path.join(dir, 'backup_set.json'), JSON.stringify(summary));
      await writeFile(path.join(dir, 'capabilities.json'), '{}');
    };
    const orphan = path.join(root, 'orphan');
    await fakeSet(orphan, path.join(root, 'missing'));
    const missing = await ohbackup(['restore', '--from', orphan, '--to', path.join(root, 'to')], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/is an increment of .*missing, which is missing or broken/);

    await fakeSet(path.join(root, 'loopA'), path.join(root, 'loopB'));
    await fakeSet(path.join(root, 'loopB'), path.join(root, 'loopA'));
    const loop = await ohbackup(['restore', '--from', path.join(root, 'loopA'), '--to', path.join(root, 'to')], env);
    expect(loop.code).toBe(2);
    expect(loop.stderr).toMatch(/form a loop/);
  });
});
