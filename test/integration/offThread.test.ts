// The engine's thread pool (engine/offThread.ts) runs the built code (dist/): a pack or a restore on a
// pool thread gives what the same call gives on the main thread, its errors keep their class and errno
// fields, and aborting stops it with the signal's reason and leaves the pool serving. A set's bundle is
// staged there too (engine/repository/stageBundle.ts), a mismatch coming back as SetMismatch with its bundle.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BaseManifestInvalid, engineThreads, runOffThread, warmEngineThreads } from '../../dist/engine/offThread.js';
import { packBundle } from '../../dist/engine/pack/index.js';
import { readManifest } from '../../dist/engine/formats/manifest.js';
import { RestoreRejected } from '../../dist/engine/unpack/index.js';
import { SetMismatch } from '../../dist/engine/repository/errors.js';
import { codeForSystemError, ErrorCode } from '../../dist/common/errors.js';

const MiB = 1024 * 1024;
let root: string;
let data: string;

async function write(rel: string, content: Buffer | string): Promise<void> {
  const p = path.join(data, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, content);
}

/** The index without its creation time: what two packs of the same tree must agree on. */
async function indexOf(outDir: string) {
  const { createdAt: _t, ...rest } = JSON.parse(await fsp.readFile(path.join(outDir, 'manage.json'), 'utf8')) as { createdAt: string };
  return rest;
}

const job = (outDir: string, extra: object = {}) => ({ bundleName: 'com.example.thread', dataDir: data, outDir, profile: { excludes: [] }, ...extra });

beforeAll(async () => {
  // One thread, whatever the machine's cores and the environment (0 would run the jobs here).
  process.env.OHBACKUP_ENGINE_THREADS = '1';
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'offThread-'));
  data = path.join(root, 'data');
  for (let i = 0; i < 40; i++) await write(`d${i % 4}/f${i}.bin`, randomBytes(500 + i * 900));
  await write('big/one.bin', randomBytes(3 * MiB));
  await fsp.mkdir(path.join(data, 'empty'), { recursive: true });
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('runOffThread', () => {
  it('packs as packBundle does on the main thread: same outputs, same digests, progress reported', async () => {
    const here = await packBundle(job(path.join(root, 'out-main'), { time: 1000, manifestPath: path.join(root, 'main.jsonl') }));
    const reports: Array<{ files: number; bytes: number }> = [];
    const there = await runOffThread('pack', job(path.join(root, 'out-thread'), { time: 1000, manifestPath: path.join(root, 'thread.jsonl') }), {
      onProgress: (p) => reports.push(p),
    });
    expect({ ...there, indexPath: '', manifestPath: '' }).toEqual({ ...here, indexPath: '', manifestPath: '' });
    expect(await indexOf(path.join(root, 'out-thread'))).toEqual(await indexOf(path.join(root, 'out-main')));
    expect(await fsp.readFile(path.join(root, 'thread.jsonl'), 'utf8')).toBe(await fsp.readFile(path.join(root, 'main.jsonl'), 'utf8'));
    expect(reports.at(-1)).toMatchObject({ files: here.files, bytes: here.bytes });
  });

  it('reads an increment base from its manifest file there; an invalid one is BaseManifestInvalid', async () => {
    await write('d0/f0.bin', randomBytes(777));
    const base = path.join(root, 'main.jsonl');
    const here = await packBundle(job(path.join(root, 'inc-main'), { base: (await readManifest(base)).entries, baseTime: 1000 }));
    const there = await runOffThread('pack', job(path.join(root, 'inc-thread'), { baseManifestPath: base, baseTime: 1000 }));
    expect(there.changed).toBe(1);
    expect({ ...there, indexPath: '' }).toEqual({ ...here, indexPath: '' });
    await fsp.writeFile(path.join(root, 'bad.jsonl'), 'not a manifest\n');
    await expect(runOffThread('pack', job(path.join(root, 'inc-bad'), { baseManifestPath: path.join(root, 'bad.jsonl') }))).rejects.toBeInstanceOf(
      BaseManifestInvalid,
    );
  });

  it('keeps the errno fields of a system error and the class and code of a rejected restore', async () => {
    await fsp.writeFile(path.join(root, 'a-file'), '');
    const sys = await runOffThread('pack', job(path.join(root, 'a-file', 'out'))).catch((e: unknown) => e);
    expect(sys).toMatchObject({ code: 'ENOTDIR', syscall: expect.any(String) });
    expect(codeForSystemError(sys)).toBe(codeForSystemError(Object.assign(new Error(), { code: 'ENOTDIR' })));

    // A restore of the threaded pack, with one byte of a slice flipped: rejected before anything is applied.
    const files = path.join(root, 'restore-files');
    await fsp.cp(path.join(root, 'out-thread'), files, { recursive: true });
    const slice = path.join(files, 'part.0.tar');
    const bytes = await fsp.readFile(slice);
    bytes[1024 + 10] ^= 0xff;
    await fsp.writeFile(slice, bytes);
    const restoreJob = {
      bundleName: 'com.example.thread',
      restoreDir: files,
      dataDir: path.join(root, 'r', 'data'),
      stagingDir: path.join(root, 'r', 'staging'),
    };
    await fsp.mkdir(path.join(root, 'r'));
    const rejected = await runOffThread('restore', { ...restoreJob, mode: 'apply' }).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(RestoreRejected);
    expect((rejected as InstanceType<typeof RestoreRejected>).code).toBe(ErrorCode.UNTAR_FAILED);
    expect(await fsp.readdir(path.join(root, 'r'))).not.toContain('data');
  });

  it('stages a packed bundle there (big files only checked while its set is written); a bundle that does not match is SetMismatch, naming it', async () => {
    const set = path.join(root, 'stage-set');
    await fsp.mkdir(set);
    await fsp.cp(path.join(root, 'out-thread'), path.join(set, 'com.example.thread'), { recursive: true });
    const stage = path.join(root, 'stage');
    await fsp.mkdir(stage);
    const stageJob = { setDir: set, stageDir: stage, bundle: 'com.example.thread', keptTree: false, move: false, previous: [], deferBigFiles: true };
    const staged = await runOffThread('stage', stageJob);
    expect(staged.deferred.map((d) => d.checked.size)).toEqual([3 * MiB]);
    expect(staged.files).toBe(40); // the small ones; the big one is the stager's to place
    expect(await fsp.readFile(path.join(stage, 'com.example.thread', 'data', 'd1', 'f1.bin'))).toEqual(await fsp.readFile(path.join(data, 'd1', 'f1.bin')));

    const slice = path.join(set, 'com.example.thread', 'part.0.tar');
    const bytes = await fsp.readFile(slice);
    bytes[1024 + 10] ^= 0xff;
    await fsp.writeFile(slice, bytes);
    const again = path.join(root, 'stage-again');
    await fsp.mkdir(again);
    const err = await runOffThread('stage', { ...stageJob, stageDir: again }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SetMismatch);
    expect((err as InstanceType<typeof SetMismatch>).bundleName).toBe('com.example.thread');
  });

  it('restores the threaded pack: the tree comes back', async () => {
    const files = path.join(root, 'restore-ok');
    await fsp.cp(path.join(root, 'out-thread'), files, { recursive: true });
    await fsp.mkdir(path.join(root, 'r2'));
    const r = await runOffThread('restore', {
      bundleName: 'com.example.thread',
      restoreDir: files,
      dataDir: path.join(root, 'r2', 'data'),
      stagingDir: path.join(root, 'r2', 'staging'),
      mode: 'apply',
    });
    expect(r.files).toBe(41);
    expect(await fsp.readFile(path.join(root, 'r2', 'data', 'big/one.bin'))).toEqual(await fsp.readFile(path.join(root, 'out-thread', 'file.0')));
  });

  it('aborts with the signal reason mid-pack, and the pool still serves the next job', async () => {
    await write('huge/h.bin', randomBytes(64 * MiB));
    const ac = new AbortController();
    const reason = new Error('stop now');
    let progressSeen = 0;
    const aborted = runOffThread('pack', job(path.join(root, 'out-abort')), {
      signal: ac.signal,
      onProgress: (p) => {
        progressSeen++;
        if (p.bytes > 0) ac.abort(reason);
      },
    });
    await expect(aborted).rejects.toBe(reason);
    expect(progressSeen).toBeGreaterThan(0);
    // Already aborted: refused without starting.
    await expect(runOffThread('pack', job(path.join(root, 'out-never')), { signal: ac.signal })).rejects.toBe(reason);
    await expect(fsp.stat(path.join(root, 'out-never'))).rejects.toMatchObject({ code: 'ENOENT' });
    await fsp.rm(path.join(data, 'huge'), { recursive: true });
    const again = await runOffThread('pack', job(path.join(root, 'out-after')));
    expect(again.files).toBe(41);
  });

  it('ends a thread idle for 10 s; the next job starts one again', async () => {
    expect(engineThreads()).toBeGreaterThan(0);
    await expect.poll(() => engineThreads(), { timeout: 30_000, interval: 500 }).toBe(0);
    const again = await runOffThread('pack', job(path.join(root, 'out-after-idle')));
    expect(again.files).toBe(41);
    expect(engineThreads()).toBe(1);
  });

  it('by default gives restores a thread more than packs on 2 cores: two packs at once share one, two restores take two', async () => {
    const cores = os.availableParallelism();
    const packThreads = Math.max(1, Math.min(cores - 1, 3));
    const restoreThreads = Math.max(packThreads, Math.min(cores, 2));
    const restore = async (name: string) => {
      const files = path.join(root, `${name}-files`);
      await fsp.cp(path.join(root, 'out-thread'), files, { recursive: true });
      await fsp.mkdir(path.join(root, name));
      const dirs = { dataDir: path.join(root, name, 'data'), stagingDir: path.join(root, name, 'staging') };
      return runOffThread('restore', { bundleName: 'com.example.thread', restoreDir: files, ...dirs, mode: 'apply' });
    };
    delete process.env.OHBACKUP_ENGINE_THREADS;
    try {
      await expect.poll(() => engineThreads(), { timeout: 30_000, interval: 500 }).toBe(0);
      const packs = await Promise.all([runOffThread('pack', job(path.join(root, 'out-two-a'))), runOffThread('pack', job(path.join(root, 'out-two-b')))]);
      expect(packs.map((p) => p.files)).toEqual([41, 41]);
      expect(engineThreads()).toBe(Math.min(packThreads, 2));
      const restores = await Promise.all([restore('two-a'), restore('two-b')]);
      expect(restores.map((r) => r.files)).toEqual([41, 41]);
      expect(engineThreads()).toBe(Math.min(restoreThreads, 2));
    } finally {
      process.env.OHBACKUP_ENGINE_THREADS = '1';
    }
  });

  it('starts before its jobs the threads a kind may take (warmEngineThreads): a job takes one, and those left unused end idle', async () => {
    const cores = os.availableParallelism();
    const restoreThreads = Math.max(Math.max(1, Math.min(cores - 1, 3)), Math.min(cores, 2));
    delete process.env.OHBACKUP_ENGINE_THREADS;
    try {
      await expect.poll(() => engineThreads(), { timeout: 30_000, interval: 500 }).toBe(0);
      warmEngineThreads('restore');
      expect(engineThreads()).toBe(restoreThreads);
      warmEngineThreads('pack'); // a pack's threads are among a restore's
      expect(engineThreads()).toBe(restoreThreads);
      const packed = await runOffThread('pack', job(path.join(root, 'out-warmed')));
      expect(packed.files).toBe(41);
      expect(engineThreads()).toBe(restoreThreads); // it ran on a warmed thread, none more started
      await expect.poll(() => engineThreads(), { timeout: 30_000, interval: 500 }).toBe(0);
    } finally {
      process.env.OHBACKUP_ENGINE_THREADS = '1';
    }
  });
});
