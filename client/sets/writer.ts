/**
 * Writes a backup set (sets/layout.ts): private to its owner (folders 0700,
 * files 0600); a file becomes visible under its name only once completely
 * copied, and is hard-linked instead of copied where the worker's file allows.
 */
import { close, createReadStream, createWriteStream, existsSync, fstat } from 'node:fs';
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

  /** Waits for every copy started so far; throws the first copy failure. */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    if (this.failures.length) throw this.failures[0];
  }

  async writeJson(name: string, value: unknown): Promise<void> {
    await writeFile(path.join(this.dir, name), JSON.stringify(value, null, 2), { mode: 0o600 });
  }
}
