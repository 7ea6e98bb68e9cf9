/**
 * The previous backup's manifest an IncrementalBackupSession bundle brings
 * (its `manifestFd`): checked from the tool's fd, then copied into the tool's
 * state folder, where the device's worker reads it (tool and worker share the
 * device's filesystem). Reads are positioned: the fd's offset is neither used
 * nor moved, and the tool keeps and closes its fd.
 */
import { createReadStream, createWriteStream, fstatSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
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

/** Copies the manifest from `fd` to `file`, a new file (0600) the worker reads. */
export async function copyBaseManifest(fd: number, file: string): Promise<void> {
  await pipeline(createReadStream('', { fd, autoClose: false, start: 0 }), createWriteStream(file, { mode: 0o600, flags: 'wx' }));
}
