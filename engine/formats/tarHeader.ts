/**
 * tar-stream's own header encoder (ustar, and a pax header pair for names
 * ustar cannot hold), for writers that put the blocks together themselves:
 * the bytes are tar-stream's by construction. Its package exports only the
 * stream API, so the module is loaded by its file.
 */
import { createRequire } from 'node:module';
import path from 'node:path';

interface HeaderFields {
  name: string;
  type: 'file' | 'directory' | 'pax-header';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

const require = createRequire(import.meta.url);
const headers = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js')) as {
  encode(h: HeaderFields): Buffer | null;
  encodePax(o: { name: string }): Buffer;
};

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
  const plain = headers.encode(h);
  if (plain) return [plain];
  const pax = headers.encodePax({ name: h.name });
  const paxHead = headers.encode({ ...h, name: 'PaxHeader', type: 'pax-header', size: pax.length })!;
  const pad = pax.length % BLOCK;
  return [paxHead, pax, ...(pad ? [ZEROS.subarray(0, BLOCK - pad)] : []), headers.encode({ ...h, name: 'PaxHeader' })!];
}
