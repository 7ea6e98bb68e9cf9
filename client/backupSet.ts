/**
 * A backup set on disk, as `ohbackup backup` writes it: every handed-over file
 * under `<bundle>/<uri>`, the capability file, and `backup_set.json`, the
 * session summary. Private to its owner (folders 0700, files 0600). A file
 * becomes visible under its name only once completely copied.
 */
import { close, createReadStream, createWriteStream, existsSync, fstat, readFileSync } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readlink, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { BundleOutcome } from '../common/session.js';

export const SET_SUMMARY = 'backup_set.json';
export const SET_CAPABILITIES = 'capabilities.json';
/** `<bundle>/manifest.jsonl` in an incremental set: the bundle's full manifest, the base of the next increment. */
export const SET_MANIFEST = 'manifest.jsonl';

const closeFd = promisify(close);
const fstatFd = promisify(fstat);

export interface BackupSetSummary {
  version: 1;
  sessionId: string;
  kind: 'backup' | 'incremental';
  createdAt: string;
  /**
   * The session's start, seconds since the epoch: the `lastIncrementalTime` of
   * an increment based on this set. Sets written before it existed: read
   * Date.parse(createdAt) / 1000 instead.
   */
  time: number;
  /** An increment's base set (absolute path): restore it (and its bases) first. */
  base?: string;
  /** The same base relative to this set's folder: found first, so a chain moved as a whole still resolves. */
  baseRelative?: string;
  bundles: BundleOutcome[];
}

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

/** What a set's backup_set.json says, as the chain of increments needs it. */
export interface SetInfo {
  /** The set folder, absolute. */
  dir: string;
  kind: string;
  /** The session's start, epoch seconds (`time`, else from `createdAt`); undefined when neither is readable. */
  time?: number;
  /** The base set named by an increment, absolute (a relative one is taken from the set's folder; `baseRelative` first when it leads to a set). */
  base?: string;
  /** Bundles held completely (state `done`). */
  done: string[];
}

/** Reads `<dir>/backup_set.json`; throws an Error saying why `dir` is not a backup set. */
export function readSetInfo(dir: string): SetInfo {
  const abs = path.resolve(dir);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path.join(abs, SET_SUMMARY), 'utf8'));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `it has no ${SET_SUMMARY}` : `its ${SET_SUMMARY} cannot be read: ${(err as Error).message}`;
    throw new Error(`${abs} is not a backup set (${why})`);
  }
  const summary = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  if (!Array.isArray(summary.bundles)) throw new Error(`${abs} is not a backup set (its ${SET_SUMMARY} lists no bundles)`);
  const done = (summary.bundles as Array<{ bundleName?: unknown; state?: unknown } | null>)
    .filter((b) => b && typeof b.bundleName === 'string' && b.state === 'done')
    .map((b) => b!.bundleName as string);
  let time: number | undefined;
  if (typeof summary.time === 'number' && Number.isFinite(summary.time) && summary.time >= 0) time = Math.floor(summary.time);
  else if (typeof summary.createdAt === 'string' && Number.isFinite(Date.parse(summary.createdAt))) time = Math.max(0, Math.floor(Date.parse(summary.createdAt) / 1000));
  if (summary.base !== undefined && (typeof summary.base !== 'string' || summary.base === '')) {
    throw new Error(`${abs}: the base named in its ${SET_SUMMARY} is not a folder path`);
  }
  let base = typeof summary.base === 'string' ? path.resolve(abs, summary.base) : undefined;
  if (base && typeof summary.baseRelative === 'string' && summary.baseRelative !== '') {
    // The relative path wins when it leads to a set (the chain was moved together); else the absolute one.
    const moved = path.resolve(abs, summary.baseRelative);
    if (existsSync(path.join(moved, SET_SUMMARY))) base = moved;
  }
  return { dir: abs, kind: typeof summary.kind === 'string' ? summary.kind : 'backup', time, base, done };
}
