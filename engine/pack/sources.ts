/**
 * Reading the files to pack: opened without following a symlink that replaced
 * them or blocking on a FIFO that did, with one mapping from "cannot open" to
 * the reason a file is skipped, and one rule for a file that changed while it
 * was read.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants as fsc, fstatSync, openSync, promises as fsp, readSync } from 'node:fs';
import { specialKind } from '../walk.js';
import type { OpenedStat } from './options.js';
import type { PackProgressMeter } from './progress.js';

const SOURCE_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;

/** Why a file that could not be opened is skipped: 'vanished', 'symlink' or the errno. */
function skipReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return code === 'ENOENT' ? 'vanished' : code === 'ELOOP' ? 'symlink' : code;
}

/**
 * Why the bytes packed for a file may not be one moment's state of it, given
 * what it looked like when opened and now; undefined when it did not change.
 * Such a file is still packed (the output and its index record describe
 * exactly the bytes stored) and listed in the index's `skipped` with this
 * reason, so the tool is told; the next backup takes it again.
 */
function changeSeen(opened: OpenedStat, now: OpenedStat & { nlink: number }, sizeReason?: string): string | undefined {
  if (sizeReason) return `changed while read: ${sizeReason}`;
  if (now.nlink === 0) return 'deleted while read (the bytes read stored)';
  if (now.size !== opened.size) return `changed while read: ${opened.size} bytes when opened, ${now.size} now`;
  if (now.mtimeMs !== opened.mtimeMs || now.ctimeMs !== opened.ctimeMs) return 'changed while read: rewritten';
  return undefined;
}

/** changeSeen, for a file read through `fh` (not stat-ed when the read already saw the change: a cut read may have closed it). */
export async function changedWhileRead(fh: fsp.FileHandle, opened: OpenedStat, sizeReason?: string): Promise<string | undefined> {
  if (sizeReason) return changeSeen(opened, { ...opened, nlink: 1 }, sizeReason);
  return changeSeen(opened, await fh.stat());
}

/**
 * Opens a file to pack and checks it is still a regular file. Returns the
 * reason to skip it instead when it vanished or cannot be read.
 */
export async function openSource(absPath: string): Promise<({ fh: fsp.FileHandle } & OpenedStat) | { skip: string }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(absPath, SOURCE_FLAGS);
  } catch (err) {
    return { skip: skipReason(err) };
  }
  const st = await fh.stat().catch(async (err: unknown) => {
    await fh.close();
    throw err;
  });
  if (!st.isFile()) {
    await fh.close();
    return { skip: specialKind(st) };
  }
  return { fh, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

/**
 * Reads a small file whole into `scratch` (at least `maxBytes` + 1 bytes, the
 * caller's own, re-used from file to file: no buffer per file to collect).
 * Synchronous on purpose: a page-cache read of a few KiB costs less than the
 * thread-pool round trips of a stream, and the LoopYield lets the event loop
 * run often enough. A file found larger than `maxBytes` (WHOLE_READ_BYTES at
 * most), or growing past it, is 'big' and streamed instead. The bytes returned
 * (a view of `scratch`, valid until its next use) are the bytes recorded: a
 * file that changed meanwhile is stored as read, never with a header that
 * lies.
 */
export function readSmallFile(
  absPath: string,
  maxBytes: number,
  scratch: Buffer,
): { data: Buffer; mode: number; mtimeMs: number; changed?: string } | { skip: string } | 'big' {
  if (scratch.length <= maxBytes)
    throw new RangeError(`readSmallFile: a scratch buffer of ${scratch.length} bytes cannot tell a file of ${maxBytes} from a bigger one`);
  let fd: number;
  try {
    fd = openSync(absPath, SOURCE_FLAGS);
  } catch (err) {
    return { skip: skipReason(err) };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { skip: specialKind(st) };
    if (st.size > maxBytes) return 'big';
    const room = maxBytes + 1; // one byte more tells whether it grew past maxBytes
    let n = 0;
    for (;;) {
      const want = room - n;
      const r = readSync(fd, scratch, n, want, n);
      if (r === 0) break;
      n += r;
      if (n > maxBytes) return 'big';
      // A short read that ends at the size fstat gave is the end of the file (no read more to be told
      // so); a file that grows right after is seen by the fstat below.
      if (r < want && n === st.size) break;
    }
    const changed = changeSeen(st, fstatSync(fd), n !== st.size ? `${st.size} bytes when opened, ${n} read and stored` : undefined);
    return { data: scratch.subarray(0, n), mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, changed };
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 of exactly `size` bytes of an open file, or undefined when it does not hold that many now. */
export async function hashOpenFile(fh: fsp.FileHandle, size: number, progress: PackProgressMeter, signal?: AbortSignal): Promise<string | undefined> {
  const hash = createHash('sha256');
  let read = 0;
  for await (const chunk of fh.createReadStream({ autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
    signal?.throwIfAborted();
    read += chunk.length;
    if (read > size) return undefined;
    hash.update(chunk);
    progress.tick();
  }
  return read === size ? hash.digest('hex') : undefined;
}
