/**
 * The packer writes its tar slices itself (headers from tar-stream's encoder):
 * a slice must be byte for byte what `tar.pack()` writes for the same entries,
 * which is how a repository re-makes a slice it stored as files.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { IndexEntry } from '../../common/manageIndex.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { sliceEntryHeader } from '../../engine/formats/sliceEntry.js';
import { encodeHeader, tarStreamEncodeHeader } from '../../engine/formats/tarHeader.js';
import { packBundle } from '../../engine/pack/index.js';

let root: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'sliceBytes-'));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** The slice tar-stream writes for `entries`, data read from `data`. */
async function tarStreamSlice(data: string, entries: IndexEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const drained = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    const body = e.kind === 'file' ? await fsp.readFile(path.join(data, e.path)) : undefined;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body) pack.entry(sliceEntryHeader(e), body, cb);
      else pack.entry(sliceEntryHeader(e), cb).end(undefined);
    });
  }
  pack.finalize();
  await drained;
  return Buffer.concat(chunks);
}

it('a slice is byte for byte the tar-stream pack of its entries (long and non-ASCII names, mode 0, sizes around 512, fractional mtimes)', async () => {
  const base = await fsp.mkdtemp(path.join(root, 'b-'));
  const data = path.join(base, 'data');
  const files: Record<string, Buffer> = {
    'a.bin': randomBytes(1),
    'empty.bin': Buffer.alloc(0),
    'b/511.bin': randomBytes(511),
    'b/512.bin': randomBytes(512),
    'b/513.bin': randomBytes(513),
    [`${'ü'.repeat(60)}/${'n'.repeat(120)}.txt`]: randomBytes(700),
    [`${'d'.repeat(90)}/${'e'.repeat(90)}/short.bin`]: randomBytes(3000), // > 100 bytes, ASCII: ustar's prefix
    [`${'x'.repeat(200)}.bin`]: randomBytes(10), // no '/' to split at: pax
    'mode0.bin': randomBytes(20),
    'mid.bin': randomBytes(300 * 1024), // streamed, not read whole
    'naïve/日本.txt': randomBytes(64),
  };
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(data, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, content);
  }
  await fsp.mkdir(path.join(data, 'empty-dir'), { recursive: true });
  // tar-stream writes its default mode for mode 0; only root can still read such a file.
  if (process.getuid?.() === 0) await fsp.chmod(path.join(data, 'mode0.bin'), 0);
  await fsp.utimes(path.join(data, 'a.bin'), 1_600_000_000.123, 1_600_000_000.789);
  const out = path.join(base, 'out');
  const summary = await packBundle({ bundleName: 'com.t.bytes', dataDir: data, outDir: out, profile: { excludes: [] }, limits: { sliceEntries: 7 } });
  const index = await readManageIndex(summary.indexPath);
  const slices = index.files.filter((f) => f.kind === 'tar');
  expect(slices.length).toBeGreaterThan(1);
  expect(index.skipped).toEqual([]);
  for (const s of slices) {
    const written = await fsp.readFile(path.join(out, s.uri));
    expect(written.length, s.uri).toBe(s.size);
    expect(written.equals(await tarStreamSlice(data, s.entries)), s.uri).toBe(true);
  }
});

it("the header encoder's fast path gives tar-stream's bytes (names, modes, sizes, times at and past the fields' limits)", () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const names = [
    'a',
    'x'.repeat(99),
    'y'.repeat(100),
    'z'.repeat(101),
    `${'d'.repeat(60)}/${'e'.repeat(60)}`,
    'naïve',
    'ä'.repeat(50),
    'sp ace/tab\tx',
    'nul\0in',
  ];
  const sizes = [0, 1, 511, 512, 8 ** 11 - 1, 8 ** 11, 2 ** 40, 123456789];
  const times = [0, 999, 1000, 1_600_000_000_123.456, -1000, -1, 2 ** 31 * 1000, 8 ** 11 * 1000, Date.UTC(2106, 1, 7)];
  const modes = [0o644, 0o7777, 0o17777, 0, 0o100755];
  for (let i = 0; i < 3000; i++) {
    const h = {
      name: names[rnd(names.length)]!,
      type: (['file', 'directory', 'pax-header'] as const)[rnd(3)]!,
      size: i < 1000 ? sizes[rnd(sizes.length)]! : rnd(2 ** 30),
      mode: i < 1000 ? modes[rnd(modes.length)]! : rnd(0o10000),
      uid: i % 97 === 0 ? 1 : 0,
      gid: 0,
      mtime: new Date(i < 1000 ? times[rnd(times.length)]! : rnd(2 ** 31) * 1000 + rnd(1000)),
    };
    const want = tarStreamEncodeHeader(h);
    const got = encodeHeader(h);
    expect(got === null ? null : got.toString('hex'), JSON.stringify(h)).toBe(want === null ? null : want.toString('hex'));
  }
});
