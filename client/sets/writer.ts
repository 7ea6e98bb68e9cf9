/**
 * Writes a backup set (sets/layout.ts): private to its owner (folders 0700,
 * files 0600); a file becomes visible under its name only once completely
 * copied, and is hard-linked instead of copied where the worker's file allows.
 * Durable once `makeDurable` has returned: each file is flushed in the
 * background as it comes (its writeback overlaps the packs still running),
 * two at a time, then the folders; the run writes its summary only after that.
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
import { chmod, copyFile, link, lstat, mkdir, open, readlink, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { fsyncDir, writeAtomically } from '../../engine/fsx.js';
import { syncFileSystem } from '../../engine/syncFs.js';

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

/** fdatasync of one file by name (the fd it came from is the tool's and closed by now). */
async function datasyncFile(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/**
 * Files flushed at once. The disk takes a second flush while one waits (a full backup's 32 files flushed about a
 * quarter sooner than one at a time); more gains little and would take the thread pool the hand-over's fd opens need.
 */
const SYNC_LANES = 2;

export class BackupSetWriter {
  private pending = new Set<Promise<void>>();
  private failures: Error[] = [];
  /** Files kept but not yet flushed, flushed SYNC_LANES at a time in the background; the folders that got a new name. */
  private unsynced: string[] = [];
  private syncLanes = new Set<Promise<void>>();
  /** Files a lane is flushing now. */
  private flushing = 0;
  private syncFailure: Error | undefined;
  private dirsTouched = new Set<string>();

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
    this.flushLater(target);
  }

  /** Queues the file's flush and starts a lane for it if one is free. */
  private flushLater(file: string): void {
    this.unsynced.push(file);
    this.dirsTouched.add(path.dirname(file));
    this.startSyncLanes();
  }

  /** Each lane flushes queued files one after another until none is left. */
  private startSyncLanes(): void {
    while (this.syncLanes.size < SYNC_LANES && this.syncLanes.size < this.unsynced.length) {
      const lane = (async () => {
        for (let next = this.unsynced.shift(); next !== undefined; next = this.unsynced.shift()) {
          this.flushing += 1;
          await datasyncFile(next).catch((err: Error) => void (this.syncFailure ??= err));
          this.flushing -= 1;
        }
      })().finally(() => {
        this.syncLanes.delete(lane);
        // A file queued after this lane found the queue empty, but before it left the set, still gets a lane.
        this.startSyncLanes();
      });
      this.syncLanes.add(lane);
    }
  }

  /**
   * Every file kept so far, and the folders holding their names, on disk
   * (what a power cut cannot take back): call after `flush`, before the
   * summary that says the set is complete. Throws what failed.
   */
  async makeDurable(opts: { everything?: boolean } = {}): Promise<void> {
    while (this.syncLanes.size) await Promise.all([...this.syncLanes]);
    // A resumed run holds files an earlier process kept and may not have flushed: the whole file system then.
    if (opts.everything) await syncFileSystem(this.dir);
    if (this.syncFailure) throw this.syncFailure;
    const dirs = [...this.dirsTouched];
    // At once: ext4 commits its journal once for fsyncs that wait together, instead of once per folder.
    await Promise.all(dirs.map((dir) => fsyncDir(dir)));
    if (dirs.length) await fsyncDir(this.dir);
    for (const dir of dirs) this.dirsTouched.delete(dir);
  }

  /** Files kept and not yet flushed (queued or being flushed): 0 once `makeDurable` has returned. */
  unflushed(): number {
    return this.unsynced.length + this.flushing;
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
    this.flushLater(target);
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

  /** Writes `<dir>/<name>` atomically and durably (a temp file flushed, renamed over it, the folder flushed): a reader sees the old or the new, whole. */
  async writeJson(name: string, value: unknown): Promise<void> {
    await writeAtomically(path.join(this.dir, name), JSON.stringify(value, null, 2));
  }
}
