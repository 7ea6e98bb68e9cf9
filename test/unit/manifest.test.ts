import { openSync, closeSync, promises as fsp, readSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManifestWriter, readManifest, writeManifest } from '../../engine/formats/manifest.js';
import { ErrorCode } from '../../common/errors.js';
import { ManifestInvalid, type ManifestEntry } from '../../common/manifest.js';

let root: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'manifest-'));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

const H = 'ab'.repeat(32);
const entries: ManifestEntry[] = [
  { path: 'a', kind: 'dir', mode: 0o755, size: 0, mtimeMs: 1_600_000_000_123.457, sha256: '' },
  { path: 'a\nb', kind: 'file', mode: 0o600, size: 3, mtimeMs: 1_600_000_001_000, sha256: H },
  { path: 'a/b c/ü☃.txt', kind: 'file', mode: 0o644, size: 0, mtimeMs: 1, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
  { path: 'ctl\r\t\u0001\u2028"\\', kind: 'file', mode: 0o4755, size: 9, mtimeMs: 2, sha256: H },
  { path: 'empty', kind: 'dir', mode: 0o700, size: 0, mtimeMs: 3, sha256: '' },
];
const header = { bundleName: 'com.example.app', time: 1_700_000_000 };

async function* slowly(list: ManifestEntry[]): AsyncGenerator<ManifestEntry> {
  for (const e of list) {
    await new Promise((r) => setImmediate(r));
    yield e;
  }
}

async function rejection(p: Promise<unknown>): Promise<ManifestInvalid> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ManifestInvalid);
  expect((err as ManifestInvalid).code).toBe(ErrorCode.INVALID_ARGUMENT);
  return err as ManifestInvalid;
}

describe('manifest', () => {
  it('round-trips every entry, one line each, a newline in a name included', async () => {
    const p = path.join(root, 'm1.jsonl');
    const written = await writeManifest(p, header, slowly(entries));
    expect(written).toEqual({ format: 'ohbackup-manifest', version: 1, ...header, entries: entries.length });

    const text = await fsp.readFile(p, 'utf8');
    const lines = text.split('\n');
    expect(lines.pop()).toBe(''); // ends with a newline
    expect(lines).toHaveLength(1 + entries.length);
    expect(JSON.parse(lines[0]!)).toEqual(written);
    expect(lines[0]).toMatch(/^\{"format":"ohbackup-manifest","version":1,"bundleName":"com\.example\.app","time":1700000000,"entries":5 *\}$/);
    expect(lines[2]).toBe(`{"path":"a\\nb","kind":"file","mode":384,"size":3,"mtimeMs":1600000001000,"sha256":"${H}"}`);
    expect(lines.slice(1).map((l) => JSON.parse(l))).toEqual(entries); // key order and values, walk order kept
    expect(lines.slice(1)).toEqual(entries.map((e) => JSON.stringify(e))); // byte for byte what JSON.stringify writes

    expect((await fsp.stat(p)).mode & 0o777).toBe(0o600);
    expect((await fsp.readdir(root)).filter((n) => n.endsWith('.tmp'))).toEqual([]);

    const got = await readManifest(p);
    expect(got.header).toEqual(written);
    expect([...got.entries.keys()]).toEqual(entries.map((e) => e.path));
    expect([...got.entries.values()]).toEqual(entries);
    expect(got.entries.get('a\nb')?.sha256).toBe(H);
  });

  it('gives the digest of the bytes read: the same for the same manifest, another for another', async () => {
    const p = path.join(root, 'm11.jsonl');
    await writeManifest(p, header, entries);
    const { createHash } = await import('node:crypto');
    const want = createHash('sha256')
      .update(await fsp.readFile(p))
      .digest('hex');
    expect((await readManifest(p)).digest).toBe(want);
    await writeManifest(p, header, entries.slice(1));
    expect((await readManifest(p)).digest).not.toBe(want);
  });

  it('writes an empty manifest and replaces an existing one atomically', async () => {
    const p = path.join(root, 'm2.jsonl');
    await writeManifest(p, header, entries);
    await writeManifest(p, { bundleName: 'other', time: 0 }, []);
    const got = await readManifest(p);
    expect(got.header).toMatchObject({ bundleName: 'other', time: 0, entries: 0 });
    expect(got.entries.size).toBe(0);
  });

  it('an aborted writer leaves the previous manifest and no temporary file', async () => {
    const p = path.join(root, 'm3.jsonl');
    await writeManifest(p, header, entries);
    const w = await ManifestWriter.open(p, { bundleName: 'x', time: 1 });
    await w.add(entries[0]!);
    await w.abort();
    expect((await readManifest(p)).entries.size).toBe(entries.length);
    expect(await fsp.readdir(root)).not.toContain('m3.jsonl.tmp');
    // Writing refuses what it could not read back.
    await expect(writeManifest(p, header, [entries[1]!, entries[1]!])).rejects.toThrow(/twice/);
    await expect(writeManifest(p, header, [{ ...entries[1]!, sha256: 'nope' }])).rejects.toThrow(/SHA-256/);
    await expect(writeManifest(p, header, [{ ...entries[1]!, path: '../x' }])).rejects.toThrow(/'\.\.' segment/);
    expect((await readManifest(p)).entries.size).toBe(entries.length);
  });

  it('reads from an fd from position 0 and leaves it open', async () => {
    const p = path.join(root, 'm4.jsonl');
    await writeManifest(p, header, entries);
    const fd = openSync(p, 'r');
    try {
      readSync(fd, Buffer.alloc(10)); // move the fd's offset: reading must not depend on it
      const got = await readManifest(fd);
      expect([...got.entries.values()]).toEqual(entries);
      // Still open and usable, twice over.
      expect((await readManifest(fd)).entries.size).toBe(entries.length);
      const b = Buffer.alloc(8);
      expect(readSync(fd, b, 0, 8, 0)).toBe(8);
      expect(b.toString()).toBe('{"format');
    } finally {
      closeSync(fd);
    }
    // A bad manifest read through an fd leaves it open too.
    const bad = path.join(root, 'm4-bad.jsonl');
    await fsp.writeFile(bad, 'not json\n');
    const fd2 = openSync(bad, 'r');
    try {
      await rejection(readManifest(fd2));
      expect(readSync(fd2, Buffer.alloc(3), 0, 3, 0)).toBe(3);
    } finally {
      closeSync(fd2);
    }
  });

  it('rejects a bad header, a bad line, a duplicate path and a wrong count with 13900020', async () => {
    const p = path.join(root, 'm5.jsonl');
    await writeManifest(p, header, entries);
    const lines = (await fsp.readFile(p, 'utf8')).split('\n').slice(0, -1);
    const attempt = async (name: string, content: string) => {
      const q = path.join(root, name);
      await fsp.writeFile(q, content);
      return rejection(readManifest(q));
    };
    const hdr = JSON.parse(lines[0]!) as Record<string, unknown>;
    const body = lines.slice(1);

    expect((await attempt('empty', '')).message).toMatch(/no header/);
    expect((await attempt('fmt', [JSON.stringify({ ...hdr, format: 'zip' }), ...body, ''].join('\n'))).message).toMatch(/line 1: .*format/);
    expect((await attempt('ver', [JSON.stringify({ ...hdr, version: 2 }), ...body, ''].join('\n'))).message).toMatch(/line 1: unsupported version 2/);
    expect((await attempt('time', [JSON.stringify({ ...hdr, time: -1 }), ...body, ''].join('\n'))).message).toMatch(/line 1: bad header: time/);

    const badLine = await attempt('badline', [lines[0], body[0], '{"path":"x",', ...body.slice(1), ''].join('\n'));
    expect(badLine.line).toBe(3);
    expect(badLine.message).toMatch(/line 3: not JSON/);
    const badEntry = await attempt('badentry', [lines[0], body[0], JSON.stringify({ ...entries[1], kind: 'link' }), ''].join('\n'));
    expect(badEntry.message).toMatch(/line 3: bad entry: kind/);
    const badDir = await attempt('baddir', [lines[0], JSON.stringify({ ...entries[0], size: 5 }), ''].join('\n'));
    expect(badDir.message).toMatch(/line 2: bad entry.*folder/);
    const abs = await attempt('abs', [lines[0], JSON.stringify({ ...entries[1], path: '/etc/passwd' }), ''].join('\n'));
    expect(abs.message).toMatch(/absolute path/);
    const blank = await attempt('blank', [lines[0], body[0], '', ...body.slice(1), ''].join('\n'));
    expect(blank.line).toBe(3);

    const dup = await attempt('dup', [lines[0], body[0], body[1], body[1], ''].join('\n'));
    expect(dup.line).toBe(4);
    expect(dup.message).toMatch(/duplicate path "a\\nb"/);

    const short = await attempt('short', [lines[0], ...body.slice(0, 3), ''].join('\n'));
    expect(short.message).toMatch(/announces 5 entries, 3 follow/);
  });

  it('accepts CRLF line ends, a missing final newline and unknown keys', async () => {
    const p = path.join(root, 'm6.jsonl');
    await writeManifest(p, header, entries);
    const lines = (await fsp.readFile(p, 'utf8')).split('\n').slice(0, -1);
    const withExtra = lines.map((l, i) => (i === 1 ? l.replace(/\}$/, ',"future":true}') : l));
    const q = path.join(root, 'm6-crlf.jsonl');
    await fsp.writeFile(q, withExtra.join('\r\n'));
    const got = await readManifest(q);
    expect([...got.entries.values()]).toEqual(entries);
  });

  it('keeps a name holding U+2028, U+2029 or a carriage return on one line', async () => {
    // Node 24's readline also breaks lines at U+2028/U+2029; the reader splits at '\n' bytes only.
    const odd: ManifestEntry[] = [
      { path: 'line\u2028sep', kind: 'file', mode: 0o600, size: 1, mtimeMs: 1, sha256: H },
      { path: 'para\u2029sep', kind: 'dir', mode: 0o700, size: 0, mtimeMs: 2, sha256: '' },
      { path: 'cr\rin/the\r\nname\r', kind: 'file', mode: 0o644, size: 2, mtimeMs: 3, sha256: H },
      { path: '\u2028\u2029\r', kind: 'file', mode: 0o644, size: 3, mtimeMs: 4, sha256: H },
    ];
    const p = path.join(root, 'm7.jsonl');
    await writeManifest(p, header, odd);
    const raw = await fsp.readFile(p, 'utf8');
    expect(raw).toContain('\u2028'); // written raw (JSON does not escape it), so the reader must cope
    expect(raw.split('\n')).toHaveLength(1 + odd.length + 1);
    const got = await readManifest(p);
    expect([...got.entries.values()]).toEqual(odd);
    const fd = openSync(p, 'r');
    try {
      expect([...(await readManifest(fd)).entries.values()]).toEqual(odd);
    } finally {
      closeSync(fd);
    }
  });

  it('decodes a character split across two reads, and a line longer than one read', async () => {
    const READ = 64 * 1024; // the reader's chunk size
    const hdr = JSON.stringify({ format: 'ohbackup-manifest', version: 1, ...header, entries: 2 }) + '\n';
    const start = `{"path":"`;
    // The first entry's path ends in '☃' (3 bytes in UTF-8) placed to straddle the first chunk boundary.
    const fill = 'x'.repeat(READ - Buffer.byteLength(hdr) - start.length - 1);
    const first: ManifestEntry = { path: `${fill}☃`, kind: 'file', mode: 0o600, size: 1, mtimeMs: 1, sha256: H };
    const second: ManifestEntry = { path: `d/${'é'.repeat(READ)}\u2028`, kind: 'dir', mode: 0o700, size: 0, mtimeMs: 2, sha256: '' };
    const body = hdr + JSON.stringify(first) + '\n' + JSON.stringify(second); // no final newline
    expect(Buffer.from(body).indexOf(Buffer.from('☃'))).toBe(READ - 1);
    const p = path.join(root, 'm8.jsonl');
    await fsp.writeFile(p, body);
    const got = await readManifest(p);
    expect([...got.entries.values()]).toEqual([first, second]);
  });

  it('refuses a line of more than 1 MiB without holding the file', async () => {
    const p = path.join(root, 'm9.jsonl');
    const hdr = JSON.stringify({ format: 'ohbackup-manifest', version: 1, ...header, entries: 1 }) + '\n';
    await fsp.writeFile(p, hdr + 'x'.repeat(3 * 1024 * 1024));
    const err = await rejection(readManifest(p));
    expect(err.line).toBe(2);
    expect(err.message).toMatch(/longer than/);
  });

  it('reads the lines before an over-long one, in the same read, and names its line', async () => {
    const p = path.join(root, 'm10.jsonl');
    const hdr = JSON.stringify({ format: 'ohbackup-manifest', version: 1, ...header, entries: 3 }) + '\n';
    const good = entries.slice(0, 2).map((e) => `${JSON.stringify(e)}\n`);
    await fsp.writeFile(p, hdr + good.join('') + 'x'.repeat(2 * 1024 * 1024) + '\n' + good[0]);
    const err = await rejection(readManifest(p));
    expect(err.line).toBe(4);
    expect(err.message).toMatch(/longer than/);
    // A bad line before it is what is reported.
    await fsp.writeFile(p, hdr + good[0] + '{bad\n' + 'x'.repeat(2 * 1024 * 1024) + '\n');
    expect((await rejection(readManifest(p))).line).toBe(3);
  });

  it('throws I/O errors as they are', async () => {
    await expect(readManifest(path.join(root, 'absent.jsonl'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
