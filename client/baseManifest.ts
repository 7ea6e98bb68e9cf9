/**
 * The previous backup's manifest an IncrementalBackupSession bundle brings
 * (its `manifestFd`): checked from the tool's fd, then copied into the tool's
 * state folder, where the device's worker reads it (tool and worker share the
 * device's filesystem). Reads are positioned: the fd's offset is neither used
 * nor moved, and the tool keeps and closes its fd.
 */
import { constants as fsc, fstatSync } from 'node:fs';
import { chmod, copyFile } from 'node:fs/promises';
import { readManifest } from '../engine/formats/manifest.js';
import { BusinessError } from '../common/businessError.js';
import { ErrorCode } from '../common/errors.js';

/** Throws 13900020, naming the bundle and what is wrong, unless `fd` holds a valid manifest of `bundleName`. */
export async function checkBaseManifest(fd: number, bundleName: string): Promise<void> {
  const invalid = (why: string) =>
    new BusinessError(ErrorCode.INVALID_ARGUMENT, `Invalid argument: the manifest of ${bundleName} (manifestFd ${fd}) is not valid: ${why}`);
  let regular: boolean;
  try {
    regular = fstatSync(fd).isFile();
  } catch (err) {
    throw invalid(`it is not an open fd (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  // A pipe or a terminal would be read until its writer closes it, perhaps never.
  if (!regular) throw invalid('it is not a regular file');
  let header: Awaited<ReturnType<typeof readManifest>>['header'];
  try {
    ({ header } = await readManifest(fd));
  } catch (err) {
    throw invalid((err as Error).message);
  }
  if (header.bundleName !== bundleName) throw invalid(`it is the manifest of ${JSON.stringify(header.bundleName)}`);
}

/**
 * Copies the manifest from `fd` to `file`, a new file (0600) the worker reads. In the kernel, through the fd's
 * /proc/self/fd entry (a file description of its own, so the tool's offset stays where it was).
 */
export async function copyBaseManifest(fd: number, file: string): Promise<void> {
  await copyFile(`/proc/self/fd/${fd}`, file, fsc.COPYFILE_EXCL);
  // The copy takes the source's mode; the transfer folder is the tool's own (0700) meanwhile.
  await chmod(file, 0o600);
}
