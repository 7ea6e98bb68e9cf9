/**
 * Private scratch folders: made with mkdtemp (0700, so only the owner can
 * enter), under the caller's temp folder, and removed when the work ends —
 * also when it fails. A process killed meanwhile leaves one behind under the
 * temp folder, named `ohbackup-<what>-*`. Folders staged inside always keep
 * the owner's rwx bits, so removing them never fails on a mode.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export async function withStagingDir<T>(what: string, tempDir: string | undefined, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tempDir ?? os.tmpdir(), `ohbackup-${what}-`));
  await chmod(dir, 0o700);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
