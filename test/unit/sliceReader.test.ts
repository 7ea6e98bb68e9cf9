import { createHash } from 'node:crypto';
import { closeSync, openSync, promises as fsp, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SliceReader } from '../../engine/unpack/sliceReader.js';

let root: string;
beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohb-slice-reader-'));
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

type Entry = { name: string; type?: 'file' | 'directory'; data?: Buffer };

/** A tar as tar-stream's pack writes it (long names as pax headers), then `tail` appended. */
async function packed(entries: Entry[], tail: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => pack.on('end', resolve));
  for (const e of entries) {
    if (e.type === 'directory') pack.entry({ name: e.name, type: 'directory', mode: 0o755 });
    else pack.entry({ name: e.name, size: e.data!.length, mode: 0o644 }, e.data!);
  }
  pack.finalize();
  await done;
  return Buffer.concat([...chunks, tail]);
}

/** Every entry the reader finds in `bytes` (a file), its data gathered; small buffers on purpose, so reads split everything. */
function readAll(bytes: Buffer, bufSize = 1024): { entries: Array<{ name: string; type: string | null; data: Buffer }>; reader: SliceReader } {
  const file = path.join(root, `slice-${Math.random().toString(16).slice(2)}`);
  writeFileSync(file, bytes);
  const fd = openSync(file, 'r');
  try {
    const reader = new SliceReader(fd, Buffer.alloc(bufSize));
    const entries: Array<{ name: string; type: string | null; data: Buffer }> = [];
    for (let h = reader.nextHeader(); h; h = reader.nextHeader()) {
      const parts: Buffer[] = [];
      if (h.type === 'file') {
        for (let left = h.size; left > 0;) {
          const part = Buffer.from(reader.data(left));
          parts.push(part);
          left -= part.length;
        }
        reader.endEntry(h.size);
      }
      entries.push({ name: h.name, type: h.type, data: Buffer.concat(parts) });
    }
    return { entries, reader };
  } finally {
    closeSync(fd);
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('SliceReader', () => {
  it('reads what tar-stream packs: folders, files across buffer refills, a pax long name, the trailing zero blocks', async () => {
    const long = `${'d'.repeat(60)}/${'f'.repeat(120)}.bin`;
    const entries: Entry[] = [
      { name: 'a', type: 'directory' },
      { name: 'a/one.txt', data: Buffer.from('hello') },
      { name: 'a/empty', data: Buffer.alloc(0) },
      { name: 'a/big.bin', data: Buffer.alloc(5000, 7) },
      { name: long, data: Buffer.from('long name') },
      { name: 'ünïcode.txt', data: Buffer.from('u') },
    ];
    const bytes = await packed(entries);
    const { entries: got, reader } = readAll(bytes);
    expect(got.map((e) => [e.name, e.type])).toEqual([
      ['a', 'directory'],
      ['a/one.txt', 'file'],
      ['a/empty', 'file'],
      ['a/big.bin', 'file'],
      [long, 'file'],
      ['ünïcode.txt', 'file'],
    ]);
    expect(got.slice(1).map((e) => e.data)).toEqual(entries.slice(1).map((e) => e.data));
    // Every byte read and hashed, the zero blocks at the end too.
    expect(reader.bytes).toBe(bytes.length);
    expect(reader.digest()).toBe(sha(bytes));
  });

  it('applies a GNU long path to the next entry', async () => {
    const name = `g/${'x'.repeat(150)}`;
    const longHeader = gnuLongPathHeader(name.length + 1);
    const body = Buffer.alloc(512);
    body.write(`${name}\0`);
    const rest = await packed([{ name: 'short', data: Buffer.from('data') }]);
    const { entries } = readAll(Buffer.concat([longHeader, body, rest]));
    expect(entries.map((e) => [e.name, e.data.toString()])).toEqual([[name, 'data']]);
  });

  it('fails with "Unexpected end of data" when the file ends inside an entry or a header', async () => {
    const bytes = await packed([{ name: 'f', data: Buffer.alloc(3000, 1) }]);
    expect(() => readAll(bytes.subarray(0, 512 + 1000))).toThrow('Unexpected end of data');
    expect(() => readAll(bytes.subarray(0, 300))).toThrow('Unexpected end of data');
  });

  it('refuses a header with a bad checksum, as tar-stream does', async () => {
    const bytes = await packed([{ name: 'f', data: Buffer.from('x') }]);
    bytes[0] = 'g'.charCodeAt(0);
    expect(() => readAll(bytes)).toThrow(/Invalid tar header/);
  });
});

/** A GNU long-path header ('L', which tar-stream's pack never writes): its encoder's block with the typeflag and checksum redone. */
function gnuLongPathHeader(size: number): Buffer {
  const require = createRequire(import.meta.url);
  const headers = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js')) as { encode(h: object): Buffer };
  const block = headers.encode({ name: '././@LongLink', type: 'file', size, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0) });
  block[156] = 'L'.charCodeAt(0);
  block.fill(' ', 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}
