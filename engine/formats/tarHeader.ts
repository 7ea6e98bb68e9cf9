/**
 * tar-stream's own header encoder (ustar, and a pax header pair for names
 * ustar cannot hold), for writers that put the blocks together themselves:
 * the bytes are tar-stream's by construction; and its decoder, for readers
 * that take the blocks apart themselves (engine/unpack/sliceReader.ts). Its
 * package exports only the stream API, so the module is loaded by its file.
 */
import { createRequire } from 'node:module';
import path from 'node:path';

export interface HeaderFields {
  name: string;
  type: 'file' | 'directory' | 'pax-header';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

const require = createRequire(import.meta.url);
/** A header as tar-stream's decoder gives it (the fields a reader here looks at). */
export interface DecodedHeader {
  name: string;
  /** null: a typeflag tar-stream does not know. */
  type: string | null;
  size: number;
  mode: number;
}

const headers = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js')) as {
  encode(h: HeaderFields): Buffer | null;
  encodePax(o: { name: string }): Buffer;
  decode(block: Buffer, filenameEncoding: string, allowUnknownFormat: boolean): DecodedHeader | null;
  decodePax(body: Buffer): Record<string, string>;
  decodeLongPath(body: Buffer, encoding: string): string;
};

/** tar-stream's decoder of one 512-byte block, as its extract calls it: null for a zero block; throws on a bad checksum or format. */
export const decodeHeader = (block: Buffer): DecodedHeader | null => headers.decode(block, 'utf-8', false);
export const decodePax = (body: Buffer): Record<string, string> => headers.decodePax(body);
export const decodeLongPath = (body: Buffer): string => headers.decodeLongPath(body, 'utf-8');

/** An empty ustar header with the fields every header here shares: magic, version, uid, gid, device numbers. */
const TEMPLATE = (() => {
  const t = Buffer.alloc(512);
  t.write('ustar\0', 257, 'latin1');
  t.write('00', 263, 'latin1');
  for (const off of [108, 116, 329, 337]) t.write('000000 ', off, 'latin1');
  return t;
})();
const OCTAL_11 = 8 ** 11;

/** tar-stream's encodeOct(val, n) written at `off`, for 0 <= val < 8^n: n octal digits, then a space. */
function putOctal(buf: Buffer, off: number, val: number, n: number): void {
  for (let i = off + n - 1; i >= off; i--) {
    buf[i] = 0x30 + (val % 8);
    val = Math.floor(val / 8);
  }
  buf[off + n] = 0x20;
}

/**
 * headers.encode for the usual entry (an ASCII name of at most 100 bytes, a
 * size and time that fit their octal fields), without its string building;
 * anything else goes to tar-stream's own. Same bytes either way.
 */
export function encodeHeader(h: HeaderFields): Buffer | null {
  const secs = (h.mtime.getTime() / 1000) | 0; // tar-stream's rounding
  if (h.name.length > 100 || Buffer.byteLength(h.name) !== h.name.length || !(h.size >= 0 && h.size < OCTAL_11) || secs < 0 || h.uid || h.gid) {
    return headers.encode(h);
  }
  const typeflag = h.type === 'file' ? 0 : h.type === 'directory' ? 5 : undefined;
  if (typeflag === undefined) return headers.encode(h);
  const buf = Buffer.allocUnsafe(512);
  TEMPLATE.copy(buf);
  buf.write(h.name, 0, 'latin1');
  putOctal(buf, 100, h.mode & 0o7777, 6);
  putOctal(buf, 124, h.size, 11);
  putOctal(buf, 136, secs, 11);
  buf[156] = 0x30 + typeflag;
  let sum = 8 * 32; // the checksum field counts as spaces
  for (let i = 0; i < 148; i++) sum += buf[i]!;
  for (let i = 156; i < 512; i++) sum += buf[i]!;
  putOctal(buf, 148, sum, 6);
  return buf;
}

/** tar-stream's own encoder, for tests that compare. */
export const tarStreamEncodeHeader = (h: HeaderFields): Buffer | null => headers.encode(h);

const DMODE = 0o755;
const FMODE = 0o644;
const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK);

/**
 * The blocks before an entry's data, exactly as `tar.pack().entry(header)`
 * writes them for a file or a folder (a mode of 0 becomes tar-stream's
 * default, as it does there).
 */
export function tarHeaderBlocks(e: { name: string; type: 'file' | 'directory'; size: number; mode: number; mtime: Date }): Buffer[] {
  const h: HeaderFields = {
    name: e.name,
    type: e.type,
    size: e.type === 'file' ? e.size || 0 : 0,
    mode: e.mode || (e.type === 'directory' ? DMODE : FMODE),
    uid: 0,
    gid: 0,
    mtime: e.mtime,
  };
  const plain = encodeHeader(h);
  if (plain) return [plain];
  const pax = headers.encodePax({ name: h.name });
  const paxHead = headers.encode({ ...h, name: 'PaxHeader', type: 'pax-header', size: pax.length })!;
  const pad = pax.length % BLOCK;
  return [paxHead, pax, ...(pad ? [ZEROS.subarray(0, BLOCK - pad)] : []), headers.encode({ ...h, name: 'PaxHeader' })!];
}
