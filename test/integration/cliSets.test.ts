/**
 * The command line around backup sets, on its failure paths: a killed backup
 * completed by `--attach`, sets that say they are not complete, two backups
 * into one folder, `--out` inside the data it reads, restores that ask before
 * replacing data, and any set as the base of an increment.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { lstat, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSummary } from '../helpers/cliJson.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import { compareRestoredBundle } from '../helpers/compareTrees.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { watch } from '../helpers/history.js';
import { listTree } from '../helpers/listTree.js';
import { temporalAddress, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

type Env = Record<string, string>;

function ohbackup(args: string[], env: Env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A CLI run we can signal; `stderr` fills as it prints (progress lines without a terminal). */
function startOhbackup(args: string[], env: Env) {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

interface SetSummary {
  sessionId: string;
  kind: string;
  base?: string;
  complete?: boolean;
  why?: string;
  failed?: string[];
  writer?: { pid: number };
  bundles: Array<{ bundleName: string; state: string; files: number; bytes: number }>;
}
const summaryOf = (set: string) => JSON.parse(readFileSync(path.join(set, 'backup_set.json'), 'utf8')) as SetSummary;
const indexOf = (set: string, bundle: string) => JSON.parse(readFileSync(path.join(set, bundle, 'manage.json'), 'utf8')) as ManageIndex;
const handedFiles = (index: ManageIndex) => index.files.flatMap((f) => f.entries.filter((e) => e.kind === 'file').map((e) => e.path)).sort();
/** Files the set holds of a bundle (every handed-over file and the index). */
const heldFiles = (set: string, bundle: string) => (existsSync(path.join(set, bundle)) ? readdirSync(path.join(set, bundle)) : []);

/** Every path below `dir` with its kind, mode, size, mtime and SHA-256: equal before and after means not one byte changed. */
async function treeState(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of await listTree(dir)) {
    const st = await lstat(p);
    const hash = st.isFile()
      ? createHash('sha256')
          .update(await readFile(p))
          .digest('hex')
      : '';
    out.push(`${path.relative(dir, p)} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${hash}`);
  }
  return out;
}

async function setup(name: string) {
  const root = await mkdtemp(path.join(os.tmpdir(), `ohbackup-${name}-`));
  const dataRoot = path.join(root, 'device');
  const stateDir = path.join(root, 'state');
  const taskQueue = uniqueTaskQueue(name);
  const env: Env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: stateDir };
  return { root, dataRoot, stateDir, taskQueue, env };
}

describe('ohbackup backup: completing, claiming and describing its set', () => {
  it('a backup killed with SIGKILL is completed by --attach: the same set, verified against the device, every file once', async () => {
    const { root, dataRoot, stateDir, taskQueue, env } = await setup('attach');
    const names = ['com.attach.one', 'com.attach.two'];
    for (const name of names) await writeBundle(dataRoot, { name, files: { ...bigFiles(5), 'small.txt': `${name} small`, 'dir/x.txt': 'x' } });
    const out = path.join(root, 'set');
    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      const first = startOhbackup(['backup', '--out', out, '--rate', '2', ...names], env);
      // Some files are in the set, not all: then the tool dies without a word.
      await watch(
        async () => names.reduce((n, b) => n + heldFiles(out, b).filter((f) => f.startsWith('file.')).length, 0) >= 2 || first.child.exitCode !== null,
      );
      expect(first.child.exitCode, first.stderr()).toBeNull();
      const during = summaryOf(out);
      expect(during).toMatchObject({ complete: false, writer: { pid: first.child.pid } });
      first.child.kill('SIGKILL');
      await first.exited;
      // What a killed run leaves says so.
      expect(summaryOf(out).complete).toBe(false);
      expect(summaryOf(out).why).toMatch(/unfinished/);

      // A second run into the same folder is refused (it is another backup's set).
      const again = await ohbackup(['backup', '--out', out, ...names], env);
      expect(again.code, again.stderr).toBe(2);
      expect(again.stderr).toContain(`--attach ${during.sessionId} --out ${out}`);

      const attached = await ohbackup(['backup', '--attach', during.sessionId, '--out', out, '--json'], env);
      expect(attached.code, attached.stderr).toBe(0);
      const result = jsonSummary<{ sessionId: string; bundles: Array<{ bundleName: string; state: string; setFiles: number; setBytes: number }> }>(
        attached.stdout,
        'backup',
      );
      expect(result.sessionId).toBe(during.sessionId);
      const summary = summaryOf(out);
      expect(summary.complete).toBe(true);
      expect(summary.writer).toBeUndefined();
      expect(summary.bundles.map((b) => [b.bundleName, b.state])).toEqual(names.map((n) => [n, 'done']));
      for (const name of names) {
        expect(await compareBundleSet(out, dataRoot, name)).toEqual([]);
        const index = indexOf(out, name);
        // Exactly the files of the index and the index itself; counted once each.
        expect(heldFiles(out, name).sort()).toEqual([...index.files.map((f) => f.uri), 'manage.json'].sort());
        const o = result.bundles.find((b) => b.bundleName === name)!;
        expect(o.setFiles).toBe(index.files.length + 1);
        expect(o.setBytes).toBe(heldFiles(out, name).reduce((n, f) => n + readFileSync(path.join(out, name, f)).length, 0));
      }
      expect(readdirSync(out).filter((f) => f.startsWith('.'))).toEqual([]);

      // A finished set cannot be attached to again.
      const late = await ohbackup(['backup', '--attach', during.sessionId, '--out', out], env);
      expect(late.code).toBe(2);
      expect(late.stderr).toMatch(/ended already/);
    });
  });

  it("a backup killed before the device's capability file came is completed by --attach, which reads the file again", async () => {
    const { root, dataRoot, stateDir, taskQueue, env } = await setup('attach-caps');
    const name = 'com.attach.caps';
    await writeBundle(dataRoot, { name, files: { ...bigFiles(3), 'small.txt': 'small' } });
    const out = path.join(root, 'set');
    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      const first = startOhbackup(['backup', '--out', out, '--rate', '1', name], env);
      await watch(async () => heldFiles(out, name).some((f) => f.startsWith('file.')) || first.child.exitCode !== null);
      expect(first.child.exitCode, first.stderr()).toBeNull();
      const { sessionId } = summaryOf(out);
      first.child.kill('SIGKILL');
      await first.exited;
      // The file is read while the session starts: a run killed that early leaves a set without it.
      await rm(path.join(out, 'capabilities.json'));

      const attached = await ohbackup(['backup', '--attach', sessionId, '--out', out, '--json'], env);
      expect(attached.code, attached.stderr).toBe(0);
      expect(summaryOf(out).complete).toBe(true);
      expect(await compareBundleSet(out, dataRoot, name)).toEqual([]);
      const caps = JSON.parse(await readFile(path.join(out, 'capabilities.json'), 'utf8')) as { bundleInfos: Array<{ name: string }> };
      expect(caps.bundleInfos.map((b) => b.name)).toEqual([name]);
    });
  });

  it('two backups into one --out at once: one writes a complete set, the other exits 2; --out inside a bundle data/ is refused', async () => {
    const { root, dataRoot, stateDir, taskQueue, env } = await setup('one-out');
    const names = ['com.out.one', 'com.out.two'];
    for (const name of names) await writeBundle(dataRoot, { name, files: { ...bigFiles(1), 'a.txt': name, 'd/b.txt': 'b' } });
    const out = path.join(root, 'set');
    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      const [a, b] = await Promise.all([ohbackup(['backup', '--out', out, '--json'], env), ohbackup(['backup', '--out', out, '--json'], env)]);
      expect([a.code, b.code].sort(), `${a.stderr}\n${b.stderr}`).toEqual([0, 2]);
      const loser = a.code === 2 ? a : b;
      // Under --json the refusal is the error line on stdout.
      expect(jsonSummary<{ error: { message: string }; exitCode: number }>(loser.stdout, 'backup')).toMatchObject({
        error: { message: expect.stringMatching(/another backup|new or empty/) },
        exitCode: 2,
      });
      const winner = jsonSummary<{ sessionId: string }>((a.code === 0 ? a : b).stdout, 'backup');
      const summary = summaryOf(out);
      expect(summary).toMatchObject({ sessionId: winner.sessionId, complete: true });
      for (const name of names) expect(await compareBundleSet(out, dataRoot, name)).toEqual([]);

      // Inside the data the backup reads (the data root known from OHBACKUP_DATA_ROOT): refused, nothing created.
      const inside = path.join(dataRoot, names[0]!, 'data', 'backups', 'set');
      const before = await treeState(dataRoot);
      const refused = await ohbackup(['backup', '--out', inside], { ...env, OHBACKUP_DATA_ROOT: dataRoot });
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toMatch(/inside the data of com\.out\.one/);
      expect(await treeState(dataRoot)).toEqual(before);
    });
    const target = path.join(root, 'restored');
    const restored = await ohbackup(['restore', '--from', out, '--to', target], env);
    expect(restored.code, restored.stderr).toBe(0);
    for (const name of names) expect(await compareRestoredBundle(dataRoot, target, name)).toEqual([]);
  });

  it('an interrupted backup records it; restoring that set warns and exits 3 unless the bundles are named', async () => {
    const { root, dataRoot, stateDir, taskQueue, env } = await setup('interrupted');
    const QUICK = 'com.int.quick';
    const SLOW = 'com.int.slow';
    await writeBundle(dataRoot, { name: QUICK, files: { 'q.txt': 'quick' } });
    await writeBundle(dataRoot, { name: SLOW, files: { ...bigFiles(8), 's.txt': 'slow' } });
    const out = path.join(root, 'set');
    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      const run = startOhbackup(['backup', '--out', out, '--rate', '1', QUICK, SLOW], env);
      await watch(async () => run.stderr().includes(`done    ${QUICK}`) || run.child.exitCode !== null);
      expect(run.child.exitCode, run.stderr()).toBeNull();
      run.child.kill('SIGINT');
      expect((await run.exited).code, run.stderr()).toBe(130);
    });
    const summary = summaryOf(out);
    expect(summary.complete).toBe(false);
    expect(summary.why).toMatch(/interrupted/);
    expect(summary.failed).toEqual([SLOW]);

    const all = await ohbackup(['restore', '--from', out, '--to', path.join(root, 'all'), '--json'], env);
    expect(all.code, all.stderr).toBe(3);
    expect(jsonSummary<{ incomplete: string | null }>(all.stdout, 'restore').incomplete).toMatch(/not complete/);
    expect(all.stderr).toMatch(/Warning: the backup set .* is not complete/);
    expect(await compareRestoredBundle(dataRoot, path.join(root, 'all'), QUICK)).toEqual([]);
    const named = await ohbackup(['restore', '--from', out, '--to', path.join(root, 'named'), QUICK], env);
    expect(named.code, named.stderr).toBe(0);
  });
});

describe('ohbackup restore asks before replacing data', () => {
  it('non-empty data: refused with exit 2 and not a byte changed; --dry-run writes nothing; --force replaces', async () => {
    const { root, dataRoot, stateDir, taskQueue, env } = await setup('replace');
    const A = 'com.rep.a';
    const B = 'com.rep.b';
    await writeBundle(dataRoot, { name: A, files: { 'a.txt': 'from the backup', 'sub/a2.txt': 'two', ...bigFiles(1) } });
    await writeBundle(dataRoot, { name: B, files: { 'b.txt': 'b' } });
    const out = path.join(root, 'set');
    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      const made = await ohbackup(['backup', '--out', out], env);
      expect(made.code, made.stderr).toBe(0);
      // Onto the device its worker serves (no --to): its data is there, found through the device's capability
      // file, or in its data root when that is known here.
      const device = await treeState(dataRoot);
      for (const known of [{}, { OHBACKUP_DATA_ROOT: dataRoot }]) {
        const onDevice = await ohbackup(['restore', '--from', out], { ...env, ...known });
        expect(onDevice.code, onDevice.stderr).toBe(2);
        expect(onDevice.stderr).toMatch(/would replace data that is there now, in com\.rep\.a, com\.rep\.b/);
      }
      expect(await treeState(dataRoot)).toEqual(device);
    });
    // A device like the source, then written to since the backup: A has a new file; B's data is empty.
    const target = path.join(root, 'target');
    const first = await ohbackup(['restore', '--from', out, '--to', target], env);
    expect(first.code, first.stderr).toBe(0);
    await writeFile(path.join(target, A, 'data', 'written-since.txt'), 'would be lost');
    for (const f of await readdir(path.join(target, B, 'data'))) await rm(path.join(target, B, 'data', f), { recursive: true });
    const before = await treeState(target);

    const refused = await ohbackup(['restore', '--from', out, '--to', target], env);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`replace data .* in ${A.replace(/\./g, '\\.')}: nothing was written`));
    expect(refused.stderr).not.toMatch(new RegExp(`${B.replace(/\./g, '\\.')}`));
    expect(await treeState(target)).toEqual(before);

    const dry = await ohbackup(['restore', '--from', out, '--to', target, '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`${A.replace(/\./g, '\\.')} .*entries.*REPLACES`));
    const dryJson = await ohbackup(['restore', '--from', out, '--to', target, '--dry-run', '--json'], env);
    expect(dryJson.code, dryJson.stderr).toBe(0);
    const plan = jsonSummary<{ bundles: Array<{ bundleName: string; entries: number; dataBytes: number; replacesData: boolean }> }>(
      dryJson.stdout,
      'restore --dry-run',
    );
    expect(plan.bundles.map((b) => [b.bundleName, b.replacesData])).toEqual([
      [A, true],
      [B, false],
    ]);
    const index = indexOf(out, A);
    expect(plan.bundles[0]).toMatchObject({ entries: index.totals.files + index.totals.dirs, dataBytes: index.totals.bytes });
    expect(await treeState(target)).toEqual(before);

    const beforeA = await treeState(path.join(target, A, 'data'));
    const forced = await ohbackup(['restore', '--from', out, '--to', target, '--force', '--keep-previous', '--json'], env);
    expect(forced.code, forced.stderr).toBe(0);
    for (const name of [A, B]) expect(await compareRestoredBundle(dataRoot, target, name)).toEqual([]);
    expect(existsSync(path.join(target, A, 'data', 'written-since.txt'))).toBe(false);
    // The tree it replaced, as it was: the file written since the backup included.
    const { sessionId } = jsonSummary<{ sessionId: string }>(forced.stdout, 'restore');
    expect(await treeState(path.join(target, A, `data.before-${sessionId}`))).toEqual(beforeA);

    // Without --keep-previous the replaced tree is gone.
    await writeFile(path.join(target, A, 'data', 'written-again.txt'), 'lost on purpose');
    const plain = await ohbackup(['restore', '--from', out, '--to', target, '--force', '--json'], env);
    expect(plain.code, plain.stderr).toBe(0);
    expect((await readdir(path.join(target, A))).filter((n) => n.startsWith('data.'))).toEqual([`data.before-${sessionId}`]);
    expect(await compareRestoredBundle(dataRoot, target, A)).toEqual([]);
  });
});

describe('every backup can be the base of the next', () => {
  it('backup --out A (no --incremental), a change, backup --base A --out B: B holds only the new and changed files', async () => {
    const { root, dataRoot, stateDir, taskQueue, env } = await setup('plain-base');
    const NAME = 'com.base.plain';
    const data = path.join(
      await writeBundle(dataRoot, { name: NAME, files: { 'keep.txt': 'same', 'edit.txt': 'old', 'gone.txt': 'x', ...bigFiles(1) } }),
      'data',
    );
    const past = new Date(Date.now() - 3600_000);
    for (const f of ['keep.txt', 'edit.txt', 'gone.txt', 'big0.bin']) await utimes(path.join(data, f), past, past);
    const A = path.join(root, 'A');
    const B = path.join(root, 'B');
    await withWorker({ taskQueue, dataRoot, stateDir }, async () => {
      const a = await ohbackup(['backup', '--out', A], env);
      expect(a.code, a.stderr).toBe(0);
      expect(summaryOf(A).kind).toBe('backup');
      expect(existsSync(path.join(A, NAME, 'manifest.jsonl'))).toBe(false);

      await writeFile(path.join(data, 'edit.txt'), 'new, longer content');
      await writeFile(path.join(data, 'new.txt'), 'added');
      await rm(path.join(data, 'gone.txt'));
      const b = await ohbackup(['backup', '--base', A, '--out', B], env);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stderr).not.toMatch(/backed up in full/);
    });
    expect(summaryOf(B)).toMatchObject({ kind: 'incremental', base: A, complete: true });
    const index = indexOf(B, NAME);
    expect(handedFiles(index)).toEqual(['edit.txt', 'new.txt']);
    expect(index.incremental!.deleted.map((d) => d.path)).toEqual(['gone.txt']);
    // And the chain restores to the device as it is now.
    const target = path.join(root, 'restored');
    const r = await ohbackup(['restore', '--from', B, '--to', target], env);
    expect(r.code, r.stderr).toBe(0);
    expect(await compareRestoredBundle(dataRoot, target, NAME)).toEqual([]);
  });
});
