/**
 * File-system helpers the packer and the unpacker share: atomic writes, fsync,
 * errno tests, a removal that copes with read-only folders, a path's ancestors,
 * one hash-while-copy loop and one positional write of a whole buffer.
 */
import { createHash } from 'node:crypto';
import { constants as fsc, promises as fsp, write, type Stats } from 'node:fs';
import path from 'node:path';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** An error from a system call (it names one), as opposed to one of ours or a library's. */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

export async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Writes all of `bytes` at `at` (positional writes on the thread pool, going on after a short one). A write of
 * nothing is an EIO: retrying it would loop for ever.
 */
export async function writeAllAt(fd: number, bytes: Buffer, at: number): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    const n = await new Promise<number>((resolve, reject) =>
      write(fd, bytes, off, bytes.length - off, at + off, (err, written) => (err ? reject(err) : resolve(written))),
    );
    if (n === 0) throw Object.assign(new Error(`EIO: a write of ${bytes.length - off} bytes at ${at + off} wrote nothing`), { code: 'EIO', syscall: 'write' });
    off += n;
  }
}

export async function fsyncDir(p: string): Promise<void> {
  const fh = await fsp.open(p, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** write tmp → fsync → rename → fsync the folder, so a reader sees the whole file or none (0600). */
export async function writeAtomically(target: string, text: string, sync = true): Promise<void> {
  const tmp = `${target}.tmp`;
  const fh = await fsp.open(tmp, 'w', FILE_MODE);
  try {
    await fh.writeFile(text, 'utf8');
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, target);
  if (sync) await fsyncDir(path.dirname(target));
}

/**
 * Text appended to a file through one buffer: written when `flush` is called (a writer flushes once `push` says
 * the buffer is due), at the byte offset the file has reached. The threshold counts UTF-16 units, a bound only.
 */
export class TextAppender {
  #buf: string[] = [];
  #units = 0;
  /** Where the next write goes. */
  #pos: number;

  constructor(
    private readonly fd: number,
    startAt: number,
    private readonly flushUnits: number,
  ) {
    this.#pos = startAt;
  }

  /** Buffers `text`; true when the buffer is due to be written. */
  push(text: string): boolean {
    this.#buf.push(text);
    this.#units += text.length;
    return this.#units >= this.flushUnits;
  }

  async flush(): Promise<void> {
    if (this.#buf.length === 0) return;
    const bytes = Buffer.from(this.#buf.join(''));
    this.#buf = [];
    this.#units = 0;
    await writeAllAt(this.fd, bytes, this.#pos);
    this.#pos += bytes.length;
  }
}

/** Makes every real folder under `p` (and `p`) 0700, never following links, so it can be removed. */
async function makeRemovable(p: string): Promise<void> {
  const st = await lstatOrUndefined(p);
  if (!st?.isDirectory()) return;
  await fsp.chmod(p, DIR_MODE).catch(() => {});
  let names: string[];
  try {
    names = await fsp.readdir(p);
  } catch {
    return;
  }
  for (const name of names) await makeRemovable(path.join(p, name));
}

/** rm -rf that also copes with read-only folders (restored trees may hold some). */
export async function removeTree(p: string): Promise<void> {
  try {
    await fsp.rm(p, { recursive: true, force: true });
  } catch (err) {
    const code = errnoOf(err);
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOTEMPTY') throw err;
    await makeRemovable(p);
    await fsp.rm(p, { recursive: true, force: true });
  }
}

/** The proper ancestors of a '/'-separated relative path, outermost first: 'a/b/c' → 'a', 'a/b'. */
export function* ancestors(p: string): Generator<string> {
  for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) yield p.slice(0, i);
}

async function writeAll(fh: fsp.FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

/** Copies all of `src` (from its start) into `out`, hashing what is copied; checks `signal` between chunks. */
export async function copyHashing(src: fsp.FileHandle, out: fsp.FileHandle, signal?: AbortSignal): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of src.createReadStream({ autoClose: false, start: 0 }) as AsyncIterable<Buffer>) {
    signal?.throwIfAborted();
    hash.update(chunk);
    bytes += chunk.length;
    await writeAll(out, chunk);
  }
  return { bytes, sha256: hash.digest('hex') };
}
