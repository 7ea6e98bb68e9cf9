/**
 * The pack's outputs are flushed while it runs (engine/pack/outputSync.ts): every output is on disk before
 * packBundle returns, and a flush's error fails the attempt and takes the output with it, so that no resumed
 * attempt keeps bytes a later fsync might call fine. fdatasync is wrapped to see and to fail it; real files.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { packBundle } from '../../engine/pack/index.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';

const flushes = vi.hoisted(() => ({ synced: [] as string[], failFor: undefined as string | undefined }));

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    const file = path.basename(fs.readlinkSync(`/proc/self/fd/${fd}`));
    if (file === flushes.failFor) {
      flushes.failFor = undefined; // once: as the kernel reports a writeback error
      return cb(Object.assign(new Error(`EIO: i/o error, fdatasync`), { code: 'EIO', errno: -5, syscall: 'fdatasync' }));
    }
    fs.fdatasync(fd, (err) => {
      if (!err) flushes.synced.push(file);
      cb(err);
    });
  };
  return { ...fs, default: { ...fs, fdatasync }, fdatasync };
});

const KiB = 1024;
const limits = { sliceEntries: 4, sliceBytes: 8 * KiB, bigFileBytes: 32 * KiB };
let root: string;
let data: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohb-early-flush-'));
  data = path.join(root, 'data');
  await fsp.mkdir(path.join(data, 'a'), { recursive: true });
  for (let i = 0; i < 6; i++) await fsp.writeFile(path.join(data, 'a', `s${i}.bin`), randomBytes(1500 + i * 100));
  await fsp.writeFile(path.join(data, 'a', 'big.bin'), randomBytes(40 * KiB));
  await fsp.writeFile(path.join(data, 'z.bin'), randomBytes(900));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

beforeEach(() => {
  flushes.synced.length = 0;
  flushes.failFor = undefined;
});

function options(outDir: string, resume = false) {
  return { bundleName: 'com.example.flush', dataDir: data, outDir, profile: { excludes: [] }, limits, resume };
}

describe('packBundle flushes its outputs as it goes', () => {
  it('has every slice and big file fdatasynced before it returns', async () => {
    const out = path.join(root, 'out-all');
    const summary = await packBundle(options(out));
    const index = await readManageIndex(summary.indexPath);
    const uris = index.files.map((f) => f.uri);
    expect(uris).toContain('file.0');
    expect(uris.filter((u) => u.startsWith('part.')).length).toBeGreaterThan(1);
    expect([...new Set(flushes.synced)].sort()).toEqual([...uris].sort());
  });

  it.each(['file.0', 'part.0.tar'])('fails the attempt on a flush error of %s and removes it, so a resumed attempt packs it again', async (uri) => {
    const out = path.join(root, `out-eio-${uri}`);
    flushes.failFor = uri;
    await expect(packBundle(options(out))).rejects.toMatchObject({ code: 'EIO' });
    expect(flushes.failFor).toBeUndefined(); // the flush was made and failed
    expect(existsSync(path.join(out, uri))).toBe(false);

    const summary = await packBundle(options(out, true));
    expect(summary.resumed).toMatchObject({ restartedBecause: expect.stringContaining(uri) });
    const index = await readManageIndex(summary.indexPath);
    expect(index.files.map((f) => f.uri)).toContain(uri);
    expect(existsSync(path.join(out, uri))).toBe(true);
  });
});
