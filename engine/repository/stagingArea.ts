/**
 * Private scratch folders: made with mkdtemp (0700, so only the owner can
 * enter), under the caller's temp folder, named `ohbackup-<what>-<pid>-*`,
 * and removed when the work ends — also when it fails. A process killed
 * meanwhile leaves its folder behind; the next one made in the same temp
 * folder removes every such folder whose process is gone. Folders staged
 * inside always keep the owner's rwx bits, so removing them never fails on
 * a mode.
 */
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const LEFT_BEHIND = /^ohbackup-[a-z]+-(\d+)-/;

/** Whether process `pid` lives (another user's counts as alive: not ours to touch). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // someone else's: alive, not ours to touch
  }
}

/** Removes the staging folders of processes that are gone (best effort: another user's stay). */
export async function removeLeftBehind(tempDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(tempDir).catch(() => [] as string[])) {
    const m = LEFT_BEHIND.exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    await rm(path.join(tempDir, name), { recursive: true, force: true }).then(
      () => removed.push(name),
      () => undefined,
    );
  }
  return removed;
}

export async function withStagingDir<T>(what: string, tempDir: string | undefined, fn: (dir: string) => Promise<T>): Promise<T> {
  const parent = tempDir ?? os.tmpdir();
  await removeLeftBehind(parent);
  const dir = await mkdtemp(path.join(parent, `ohbackup-${what}-${process.pid}-`));
  await chmod(dir, 0o700);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
