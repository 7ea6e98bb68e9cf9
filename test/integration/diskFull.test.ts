/**
 * Disk full (a small tmpfs; we mount one where the system permits it, and
 * skip with the reason printed where it does not):
 * - backup: the bundles' transfer areas (backup/backup, where they are packed)
 *   on an 8 MiB tmpfs; a bundle bigger than it ends with 13900025, nothing of
 *   it is handed over, its half-made data is cleaned (so the next bundle has
 *   the room), the bundle that fits completes, and the session releases clean;
 * - restore: the target data root on a tmpfs with room for the tool's files
 *   but not for the tree built from them; the bundle ends with 13900025, its
 *   data as before, and the next bundle restores.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { runBackup } from '../../client/runs/runBackup.js';
import { restoreFromSet } from '../../client/runs/restoreSession.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { compareTrees } from '../helpers/compareTrees.js';
import { listTree } from '../helpers/listTree.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';
import { compareBundleSet } from '../helpers/verifySet.js';

const BIG = 'com.full.big';
const SMALL = 'com.full.small';
const FAT = 'com.full.fat';
const THIN = 'com.full.thin';

let root: string;
const mounts: string[] = [];
let cannotMount: string | undefined;

/** Mounts a tmpfs of `size` at `dir`; returns why not when the system does not permit it. */
function mountTmpfs(dir: string, size: string): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
    mounts.push(dir);
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs (${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message})`;
  }
}

function notes(n: number, bytes: number): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (let i = 0; i < n; i++) out[`notes/n${i}.txt`] = Buffer.alloc(bytes, 97 + (i % 26));
  return out;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-full-'));
  const probe = path.join(root, 'probe');
  await mkdir(probe);
  cannotMount = mountTmpfs(probe, '1m');
  if (!cannotMount) execFileSync('umount', [mounts.pop()!]);
});

afterAll(async () => {
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', [m]);
    } catch {
      execFileSync('umount', ['-l', m]); // something still holds it: detach it anyway
    }
  }
  await rm(root, { recursive: true, force: true });
});

let madeSet: Promise<{ source: string; setDir: string }> | undefined;

/** The set the restore tests restore, from a device on the ordinary disk (made once). */
function restoreSet() {
  madeSet ??= (async () => {
    const source = path.join(root, 'source');
    await writeBundle(source, { name: FAT, files: notes(70, 50_000) }); // 3.5 MB in one tar slice
    await writeBundle(source, { name: THIN, files: notes(5, 2_000) });
    const setDir = path.join(root, 'restore-set');
    const taskQueue = uniqueTaskQueue('full-set');
    configureTool(taskQueue);
    await withWorker({ taskQueue, dataRoot: source, stateDir: path.join(root, 'state') }, async () => {
      const r = await runBackup({ out: setDir, bundles: [FAT, THIN] });
      expect(r.outcome, JSON.stringify(r.bundles)).toBe('done');
    });
    return { source, setDir };
  })();
  return madeSet;
}

describe('disk full', () => {
  it('backup: the bundle that does not fit in the transfer area ends with 13900025, cleaned and unreported; the one that fits completes', async (ctx) => {
    if (cannotMount) {
      console.warn(`diskFull skipped: ${cannotMount}`);
      return ctx.skip(cannotMount);
    }
    const dataRoot = path.join(root, 'device');
    await writeBundle(dataRoot, { name: BIG, files: { ...bigFiles(5, 'media'), ...notes(50, 20_000) } }); // ≈ 11 MiB
    await writeBundle(dataRoot, { name: SMALL, files: { ...bigFiles(1, 'media'), ...notes(50, 20_000) } }); // ≈ 3 MiB
    // Both bundles' transfer areas on one 8 MiB tmpfs.
    const area = path.join(root, 'transfer');
    await mkdir(area);
    expect(mountTmpfs(area, '8m')).toBeUndefined();
    for (const b of [BIG, SMALL]) {
      await mkdir(path.join(area, b));
      await rm(path.join(dataRoot, b, 'backup', 'backup'), { recursive: true });
      await symlink(path.join(area, b), path.join(dataRoot, b, 'backup', 'backup'));
    }
    const taskQueue = uniqueTaskQueue('full');
    configureTool(taskQueue);
    const set = new BackupSetWriter(path.join(root, 'set'));
    await set.init();
    const rec = new Recorder(set);
    let bigLeftAtEnd: string[] | undefined;
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      // One bundle at a time, BIG first: SMALL fits only if BIG's half-made data is gone.
      const session = new backup.SessionBackup(
        {
          ...rec.callbacks,
          onBundleEnd: (err, name) => {
            rec.callbacks.onBundleEnd(err, name);
            if (name === BIG) bigLeftAtEnd = readdirSync(path.join(area, BIG));
          },
        },
        { maxConcurrentBundles: 1 },
      );
      await session.appendBundles([BIG, SMALL]);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await set.flush();
      await session.release();
    });
    const bigEnd = rec.of(BIG).find((c) => c.cb === 'onBundleEnd')!;
    expect(bigEnd.code, bigEnd.message).toBe(13900025);
    expect(bigEnd.message).toMatch(/No space left on device/);
    expect(rec.of(BIG).filter((c) => c.cb === 'onFileReady')).toEqual([]); // nothing claimed that is not there
    expect(JSON.parse(rec.of(BIG).find((c) => c.cb === 'onResultReport')!.payload!)).toMatchObject({ resultInfo: { errorCode: 13900025 } });
    expect(bigLeftAtEnd).toEqual([]); // cleaned before its end was reported
    expect(rec.of(SMALL).find((c) => c.cb === 'onBundleEnd')?.code).toBeUndefined();
    expect(await compareBundleSet(set.dir, dataRoot, SMALL)).toEqual([]);
    expect(rec.count('onAllBundlesEnd')).toBe(1);
    // Released: the transfer area is empty again.
    expect(await listTree(area)).toEqual([path.join(area, BIG), path.join(area, SMALL)]);
  });

  it('restore: the bundle whose new tree does not fit ends with 13900025, its data untouched; the next one restores', async (ctx) => {
    if (cannotMount) {
      console.warn(`diskFull skipped: ${cannotMount}`);
      return ctx.skip(cannotMount);
    }
    const { source, setDir } = await restoreSet();
    // The target: a 6 MiB tmpfs holding both bundles' old data. FAT's files (3.6 MB) fit; the tree built from them as well does not.
    const target = path.join(root, 'target');
    await mkdir(target);
    expect(mountTmpfs(target, '6m')).toBeUndefined();
    await writeBundle(target, { name: FAT, files: { 'old.txt': 'old fat' } });
    await writeBundle(target, { name: THIN, files: { 'old.txt': 'old thin' } });
    const q2 = uniqueTaskQueue('full-restore');
    configureTool(q2);
    const rec = new Recorder(undefined, { observer: true });
    const result = await withWorker({ taskQueue: q2, dataRoot: target, stateDir: path.join(root, 'state') }, () =>
      restoreFromSet({ from: setDir, bundles: [FAT, THIN], session: { maxConcurrentBundles: 1 }, observe: rec.callbacks }),
    );
    const fat = result.bundles.find((b) => b.bundleName === FAT)!;
    expect(fat.state).toBe('failed');
    expect(fat.error?.code, fat.error?.message).toBe(13900025);
    expect(await readdir(path.join(target, FAT, 'data'))).toEqual(['old.txt']);
    expect(await readFile(path.join(target, FAT, 'data', 'old.txt'), 'utf8')).toBe('old fat');
    expect(result.bundles.find((b) => b.bundleName === THIN)?.state).toBe('done');
    expect(await compareTrees(path.join(source, THIN, 'data'), path.join(target, THIN, 'data'))).toEqual([]);
    // Released: nothing of the session is left in the bundles' restore areas.
    for (const b of [FAT, THIN]) expect(await readdir(path.join(target, b, 'backup', 'restore'))).toEqual([]);
    for (const cb of ['onBundleBegin', 'onBundleEnd'] as const) expect(rec.calls.filter((c) => c.cb === cb).length).toBe(2);
  });

  it("restore: the bundle whose files do not even fit in the restore area ends with 13900025 (the tool's write fails), its data untouched; the next one restores", async (ctx) => {
    if (cannotMount) {
      console.warn(`diskFull skipped: ${cannotMount}`);
      return ctx.skip(cannotMount);
    }
    const { source, setDir } = await restoreSet();
    const target = path.join(root, 'target-tiny');
    await mkdir(target);
    expect(mountTmpfs(target, '2m')).toBeUndefined();
    await writeBundle(target, { name: FAT, files: { 'old.txt': 'old fat' } });
    await writeBundle(target, { name: THIN, files: { 'old.txt': 'old thin' } });
    const taskQueue = uniqueTaskQueue('full-restore-tiny');
    configureTool(taskQueue);
    const result = await withWorker({ taskQueue, dataRoot: target, stateDir: path.join(root, 'state') }, () =>
      restoreFromSet({ from: setDir, bundles: [FAT, THIN], session: { maxConcurrentBundles: 1 } }),
    );
    const fat = result.bundles.find((b) => b.bundleName === FAT)!;
    expect(fat.state).toBe('failed');
    expect(fat.error?.code, fat.error?.message).toBe(13900025);
    expect(await readdir(path.join(target, FAT, 'data'))).toEqual(['old.txt']);
    expect(result.bundles.find((b) => b.bundleName === THIN)?.state).toBe('done');
    expect(await compareTrees(path.join(source, THIN, 'data'), path.join(target, THIN, 'data'))).toEqual([]);
    for (const b of [FAT, THIN]) expect(await readdir(path.join(target, b, 'backup', 'restore'))).toEqual([]);
  });
});
