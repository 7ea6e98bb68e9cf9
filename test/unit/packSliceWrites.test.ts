/**
 * A slice is written on the thread pool while the packer fills its next buffer (engine/pack/slice.ts): the bytes
 * land in order whatever the batches and short writes, and a write's error fails the attempt with that error, with
 * no sidecar, no index and no fd left behind, so that a resumed attempt repacks the slice. `write` is wrapped to
 * cut and to fail it; real files.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { packBundle } from '../../engine/pack/index.js';
import { extractTarEntries } from '../helpers/extractTar.js';
import { sha256Of } from '../helpers/packedSet.js';

const writes = vi.hoisted(() => ({
  /** Slice writes seen, by file name. */
  calls: new Map<string, number>(),
  /** The file and the write (1-based) that fails with ENOSPC. */
  failAt: undefined as { file: string; nth: number } | undefined,
  /** Every write to a slice writes at most half of what it is given. */
  halve: false,
}));

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const write = (...args: unknown[]) => {
    const [fd, buf, offset, length, position, cb] = args as [number, Buffer, number, number, number, (e: Error | null, n?: number) => void];
    if (typeof cb !== 'function') return (fs.write as (...a: unknown[]) => void)(...args);
    const file = path.basename(fs.readlinkSync(`/proc/self/fd/${fd}`));
    if (!/^part\.\d+\.tar$/.test(file)) return fs.write(fd, buf, offset, length, position, cb);
    const nth = (writes.calls.get(file) ?? 0) + 1;
    writes.calls.set(file, nth);
    if (writes.failAt?.file === file && writes.failAt.nth === nth) {
      writes.failAt = undefined;
      return setImmediate(() => cb(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' })));
    }
    const len = writes.halve && length > 1 ? Math.ceil(length / 2) : length;
    fs.write(fd, buf, offset, len, position, cb);
  };
  return { ...fs, default: { ...fs, write }, write };
});

const KiB = 1024;
const MiB = 1024 * KiB;
let root: string;
let data: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohb-slice-writes-'));
  data = path.join(root, 'data');
  await fsp.mkdir(path.join(data, 'a'), { recursive: true });
  // Sizes that cut across the 256 KiB write batches: many small files, one exactly 256 KiB (read whole), one of
  // 1 MiB (streamed into the slice: above the whole-read size, below a big file's), some 5.5 MiB in one slice.
  for (let i = 0; i < 40; i++) await fsp.writeFile(path.join(data, 'a', `f${String(i).padStart(2, '0')}.bin`), randomBytes(1 + ((i * 37 * KiB) % (200 * KiB))));
  await fsp.writeFile(path.join(data, 'a', 'g-whole.bin'), randomBytes(256 * KiB));
  await fsp.writeFile(path.join(data, 'a', 'h-streamed.bin'), randomBytes(1 * MiB));
  await fsp.mkdir(path.join(data, 'empty'));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

beforeEach(() => {
  writes.calls.clear();
  writes.failAt = undefined;
  writes.halve = false;
});

function options(outDir: string, resume = false) {
  return { bundleName: 'com.example.slices', dataDir: data, outDir, profile: { excludes: [] }, resume };
}

/** The slices of a finished pack hold exactly their index entries, with the source's bytes. */
async function expectSlicesHoldTheSource(outDir: string): Promise<void> {
  const index = await readManageIndex(path.join(outDir, 'manage.json'));
  const tars = index.files.filter((f) => f.kind === 'tar');
  expect(tars.length).toBe(1);
  for (const t of tars) {
    const p = path.join(outDir, t.uri);
    expect(t.size).toBe((await fsp.stat(p)).size);
    expect(t.sha256).toBe(await sha256Of(p));
    const got = await extractTarEntries(p);
    expect(got.map((g) => g.name)).toEqual(t.entries.map((e) => e.path));
    for (const [i, e] of t.entries.entries()) {
      if (e.kind !== 'file') continue;
      expect(got[i]!.sha256).toBe(e.sha256);
      expect(e.sha256).toBe(await sha256Of(path.join(data, e.path)));
    }
  }
  expect(tars[0]!.entries.filter((e) => e.kind === 'file')).toHaveLength(42);
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('a slice written on the thread pool', () => {
  it('holds the bytes in order across many batches', async () => {
    const out = path.join(root, 'out-batches');
    await packBundle(options(out));
    expect(writes.calls.get('part.0.tar')).toBeGreaterThan(10);
    await expectSlicesHoldTheSource(out);
  });

  it('goes on after short writes', async () => {
    writes.halve = true;
    const out = path.join(root, 'out-short');
    await packBundle(options(out));
    await expectSlicesHoldTheSource(out);
  });

  it('fails the attempt with a write error, leaves no sidecar, index or fd, and a resume repacks the slice', async () => {
    const out = path.join(root, 'out-enospc');
    const before = openFds();
    writes.failAt = { file: 'part.0.tar', nth: 3 };
    await expect(packBundle(options(out))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(writes.failAt).toBeUndefined(); // the failing write was reached
    expect(existsSync(path.join(out, 'part.0.tar.done.json'))).toBe(false);
    expect(existsSync(path.join(out, 'manage.json'))).toBe(false);
    expect(openFds()).toBe(before);

    const summary = await packBundle(options(out, true));
    expect(summary.resumed).toMatchObject({ kept: 0 });
    await expectSlicesHoldTheSource(out);
    expect(openFds()).toBe(before);
  });
});
