/**
 * Writes a backup set (sets/layout.ts): private to its owner (folders 0700,
 * files 0600); a file becomes visible under its name only once completely
 * copied, and is hard-linked instead of copied where the worker's file allows.
 */
import {
  close,
  closeSync,
  copyFileSync,
  createReadStream,
  createWriteStream,
  existsSync,
  fstat,
  fstatSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  chmodSync,
  openSync,
  writeSync,
} from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readlink, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';

const closeFd = promisify(close);
const fstatFd = promisify(fstat);

/**
 * Links the fd's file at `to` when that is the same file and this process
 * owns it: the worker never changes a file once handed over, so the set can
 * share it and no byte is copied. False when it cannot (another filesystem,
 * another owner, not Linux): then the caller copies.
 */
async function linkFd(fd: number, to: string): Promise<boolean> {
  try {
    const st = await fstatFd(fd);
    if (!st.isFile() || st.uid !== process.getuid?.()) return false;
    const from = await readlink(`/proc/self/fd/${fd}`);
    await link(from, to);
    const made = await lstat(to);
    if (made.ino === st.ino && made.dev === st.dev) return true;
    await rm(to, { force: true }); // the name pointed elsewhere by now
    return false;
  } catch {
    return false;
  }
}

/** linkFd, synchronously. */
function linkFdSync(fd: number, to: string): boolean {
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== process.getuid?.()) return false;
    linkSync(readlinkSync(`/proc/self/fd/${fd}`), to);
    const made = lstatSync(to);
    if (made.ino === st.ino && made.dev === st.dev) return true;
    rmSync(to, { force: true });
    return false;
  } catch {
    return false;
  }
}

/** Copies the fd's bytes to `to` (0600): in the kernel through /proc/self/fd where it can, else a stream. */
async function copyFd(fd: number, to: string): Promise<void> {
  const viaProc = `/proc/self/fd/${fd}`;
  if (existsSync(viaProc)) {
    await copyFile(viaProc, to);
    await chmod(to, 0o600);
    return;
  }
  await pipeline(createReadStream('', { fd, autoClose: false, start: 0 }), createWriteStream(to, { mode: 0o600 }));
}

export class BackupSetWriter {
  private pending = new Set<Promise<void>>();
  private failures: Error[] = [];

  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Copies the fd's bytes to `<bundle>/<name>` and closes the fd (the tool owns it). */
  keep(bundleName: string, name: string, fd: number): void {
    const job = this.copy(bundleName, name, fd).catch((err: Error) => void this.failures.push(err));
    this.pending.add(job);
    void job.finally(() => this.pending.delete(job));
  }

  private async copy(bundleName: string, name: string, fd: number): Promise<void> {
    const dir = path.join(this.dir, bundleName);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const target = path.join(dir, name);
    const partial = `${target}.partial`;
    try {
      await rm(partial, { force: true });
      if (!(await linkFd(fd, partial))) await copyFd(fd, partial);
    } finally {
      await closeFd(fd);
    }
    await rename(partial, target);
  }

  /**
   * `keep`, done before it returns (a hard link, else a copy in the kernel):
   * once it returns the set holds the file. True when the set held it already
   * (delivered again after a re-attach). Throws what failed.
   */
  keepNow(bundleName: string, name: string, fd: number): boolean {
    const target = path.join(this.dir, bundleName, name);
    const partial = `${target}.partial`;
    try {
      mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
      rmSync(partial, { force: true });
      if (!linkFdSync(fd, partial)) {
        const viaProc = `/proc/self/fd/${fd}`;
        if (!existsSync(viaProc)) throw new Error(`no /proc/self/fd to copy fd ${fd} from`);
        copyFileSync(viaProc, partial);
        chmodSync(partial, 0o600);
      }
    } finally {
      closeSync(fd);
    }
    const again = existsSync(target);
    renameSync(partial, target);
    return again;
  }

  /**
   * Creates `<dir>/<name>` holding `value` only if it does not exist (an
   * exclusive create): false when it does. How a run claims its set folder.
   */
  async claim(name: string, value: unknown): Promise<boolean> {
    let fd: number;
    try {
      fd = openSync(path.join(this.dir, name), 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
    try {
      writeSync(fd, JSON.stringify(value, null, 2));
    } finally {
      closeSync(fd);
    }
    return true;
  }

  /** Removes `<dir>/<name>` (and its temp copy), ignoring failures: a leftover is harmless. */
  removeQuietly(name: string): void {
    for (const f of [name, `${name}.tmp`]) rmSync(path.join(this.dir, f), { force: true });
  }

  /** Waits for every copy started so far; throws the first copy failure. */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    if (this.failures.length) throw this.failures[0];
  }

  /** Writes `<dir>/<name>` atomically (a temp file renamed over it): a reader sees the old or the new, whole. */
  async writeJson(name: string, value: unknown): Promise<void> {
    const file = path.join(this.dir, name);
    await writeFile(`${file}.tmp`, JSON.stringify(value, null, 2), { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }
}
