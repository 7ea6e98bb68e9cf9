import { closeSync, readFileSync } from 'node:fs';
import { mkdtemp, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import type { File } from '../../client/types.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

async function device(prefix: string) {
  const root = await mkdtemp(path.join(os.tmpdir(), `ohbackup-${prefix}-`));
  return { root, dataRoot: path.join(root, 'device'), stateDir: path.join(root, 'state') };
}

describe('IncrementalBackupSession', () => {
  it('appendBundles three times: bundles start by priority, then append order; each file carries the new manifest', async () => {
    const d = await device('prio');
    const held = await writeBundle(d.dataRoot, { name: 'com.p.held', hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    for (const n of ['b', 'c', 'd', 'e']) await writeBundle(d.dataRoot, { name: `com.p.${n}` });
    const taskQueue = uniqueTaskQueue('prio');
    configureTool(taskQueue);
    const rec = new Recorder();
    const manifests: string[] = [];
    const cb: typeof rec.callbacks = {
      ...rec.callbacks,
      onFileReady: (err, file: File) => {
        if (!err && file.manifestFd !== undefined && file.manifestFd >= 0) {
          if (file.uri === 'manage.json') manifests.push(readFileSync(file.manifestFd, 'utf8'));
          closeSync(file.manifestFd);
        }
        rec.callbacks.onFileReady(err, file);
      },
    };
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const session = new backup.IncrementalBackupSession(cb, { maxConcurrentBundles: 1 });
      const full = (bundleName: string, priority?: number) => ({ bundleName, lastIncrementalTime: 0, manifestFd: -1, priority });
      await session.appendBundles([full('com.p.held')]);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin'));
      await session.appendBundles([full('com.p.b', 1), full('com.p.c', 5)]);
      await session.appendBundles([full('com.p.d', 5), full('com.p.e')]);
      await writeFile(path.join(held, 'go'), '');
      await rec.until((c) => c.filter((x) => x.cb === 'onBundleEnd').length === 5 && c.some((x) => x.cb === 'onAllBundlesEnd'));
      await session.release();
    });
    expect(rec.calls.filter((c) => c.cb === 'onBundleBegin').map((c) => c.bundleName)).toEqual(['com.p.held', 'com.p.c', 'com.p.d', 'com.p.b', 'com.p.e']);
    expect(manifests).toHaveLength(5);
    for (const m of manifests) expect(JSON.parse(m.split('\n')[0]!)).toMatchObject({ format: 'ohbackup-manifest', version: 1 });
  });

  it('an increment hands over only new and changed files, records deletions, and its manifest matches the device', async () => {
    const d = await device('incr');
    const root = await writeBundle(d.dataRoot, {
      name: 'com.i.app',
      files: { 'keep.txt': 'same', 'edit.txt': 'old', 'touch.txt': 'touched', 'gone.txt': 'bye', 'dir/inner.txt': 'in', 'old-name.txt': 'moving' },
    });
    const taskQueue = uniqueTaskQueue('incr');
    configureTool(taskQueue);
    const data = path.join(root, 'data');
    const run = async (entry: { lastIncrementalTime: number; manifestFd: number }) => {
      const rec = new Recorder();
      let manifest = '';
      let index = '';
      const cb: typeof rec.callbacks = {
        ...rec.callbacks,
        onFileReady: (err, file: File) => {
          if (!err && file.uri === 'manage.json') {
            index = readFileSync(file.fd, 'utf8');
            manifest = readFileSync(file.manifestFd!, 'utf8');
          }
          if (!err && file.manifestFd !== undefined) closeSync(file.manifestFd);
          rec.callbacks.onFileReady(err, file);
        },
      };
      const session = new backup.IncrementalBackupSession(cb);
      await session.appendBundles([{ bundleName: 'com.i.app', ...entry }]);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await session.release();
      expect(rec.of('com.i.app').find((c) => c.cb === 'onBundleEnd')?.code).toBeUndefined();
      return {
        manifest,
        index: JSON.parse(index) as { files: Array<{ entries: Array<{ path: string; kind: string }> }>; incremental?: { deleted: Array<{ path: string }> } },
      };
    };
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const first = await run({ lastIncrementalTime: 0, manifestFd: -1 });
      const base = path.join(d.root, 'base.jsonl');
      await writeFile(base, first.manifest);
      const since = Math.floor(Date.now() / 1000);

      // The changes: edit, touch without change, add, delete a file and a folder, rename.
      await writeFile(path.join(data, 'edit.txt'), 'new content');
      const later = new Date(Date.now() + 60_000);
      await utimes(path.join(data, 'touch.txt'), later, later);
      await writeFile(path.join(data, 'added.txt'), 'hello');
      await (await import('node:fs/promises')).rm(path.join(data, 'gone.txt'));
      await (await import('node:fs/promises')).rm(path.join(data, 'dir'), { recursive: true });
      await (await import('node:fs/promises')).rename(path.join(data, 'old-name.txt'), path.join(data, 'new-name.txt'));

      const fd = (await import('node:fs')).openSync(base, 'r');
      const second = await run({ lastIncrementalTime: since, manifestFd: fd });
      closeSync(fd);
      const packed = second.index.files.flatMap((f) => f.entries.filter((e) => e.kind === 'file').map((e) => e.path)).sort();
      expect(packed).toEqual(['added.txt', 'edit.txt', 'new-name.txt']);
      expect(second.index.incremental!.deleted.map((x) => x.path).sort()).toEqual(['dir', 'gone.txt', 'old-name.txt']); // a deleted folder stands for everything in it
      const paths = second.manifest
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => (JSON.parse(l) as { path: string }).path)
        .sort();
      expect(paths).toEqual(['added.txt', 'edit.txt', 'keep.txt', 'new-name.txt', 'touch.txt']);
    });
  });

  it('getBackupDataSize reports every listed bundle: precise figures are the bytes on disk, and the bytes changed since the given time', async () => {
    const d = await device('size');
    await writeBundle(d.dataRoot, { name: 'com.z.one', files: { 'a.bin': Buffer.alloc(1000), 'b/c.bin': Buffer.alloc(2345) } });
    const two = await writeBundle(d.dataRoot, { name: 'com.z.two', files: { 'old.bin': Buffer.alloc(500) } });
    const past = new Date(Date.now() - 3600_000);
    await utimes(path.join(two, 'data', 'old.bin'), past, past);
    await writeFile(path.join(two, 'data', 'new.bin'), Buffer.alloc(777));
    const taskQueue = uniqueTaskQueue('size');
    configureTool(taskQueue);
    const rec = new Recorder();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const session = new backup.SessionBackup(rec.callbacks);
      const since = Math.floor((Date.now() - 600_000) / 1000);
      await session.getBackupDataSize(true, [
        { bundleName: 'com.z.one', lastIncrementalTime: 0 },
        { bundleName: 'com.z.two', lastIncrementalTime: since },
      ]);
      await rec.until((c) => c.some((x) => x.cb === 'onBackupSizeReport' && JSON.parse(x.payload!).scanning === ''));
      await session.release();
    });
    const reports = rec.calls
      .filter((c) => c.cb === 'onBackupSizeReport')
      .map((c) => JSON.parse(c.payload!) as { scaned: Array<{ name: string; dataSize: number; incDataSize: number }> });
    const scaned = reports.flatMap((r) => r.scaned);
    expect(scaned).toEqual([
      { name: 'com.z.one', dataSize: 3345, incDataSize: -1 },
      { name: 'com.z.two', dataSize: 1277, incDataSize: 777 },
    ]);
    // Done well within 5 s: the one report came at once.
    expect(reports).toHaveLength(1);
  });
});
