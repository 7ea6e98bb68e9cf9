/**
 * Capability files on the tool's side: getLocalCapabilities (the device's
 * worker writes the file; the tool opens it and unlinks it, keeping only the
 * fd) and reading the one a restore is given (SessionRestore.appendBundles).
 */
import { fstatSync, open, readSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { BusinessError } from '../common/businessError.js';
import { CapabilitiesSchema, type Capabilities } from '../common/capabilities.js';
import { ErrorCode } from '../common/errors.js';
import type { CapabilitiesWorkflow } from '../common/messages.js';
import type { FileData, IncrementalBackupTime } from './types.js';

const openFd = promisify(open);

/** Far above any real device's capability file (≈ 400 bytes a bundle), far below what would strain the tool. */
const MAX_CAPABILITY_FILE_BYTES = 64 * 1024 * 1024;

export async function openCapabilities(client: Client, taskQueue: string, only?: IncrementalBackupTime[]): Promise<FileData> {
  const path = await client.workflow.execute<CapabilitiesWorkflow>('capabilitiesWorkflow', {
    taskQueue,
    workflowId: `ohbackup-capabilities-${randomUUID()}`,
    args: [{ only: only?.map((b) => ({ bundleName: b.bundleName, lastIncrementalTime: b.lastIncrementalTime })) }],
    staticSummary: 'getLocalCapabilities',
  });
  const fd = await openFd(path, 'r');
  await unlink(path).catch(() => undefined);
  return { fd };
}

/**
 * Reads and checks the capability file behind `fd` (api.md §8), from its
 * start whatever the fd's offset, which it leaves as it was. Anything but a
 * regular file holding a valid capability document → 13900020.
 */
export function readCapabilityFile(fd: number): Capabilities {
  const invalid = (why: string) => new BusinessError(ErrorCode.INVALID_ARGUMENT, `Invalid argument: the capability file (fd ${fd}) ${why}`);
  let size: number;
  try {
    const st = fstatSync(fd);
    // A pipe or a terminal would be read until its writer closes it, perhaps never.
    if (!st.isFile()) throw invalid('is not a regular file');
    size = st.size;
  } catch (err) {
    if (err instanceof BusinessError) throw err;
    throw invalid(`cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (size > MAX_CAPABILITY_FILE_BYTES) throw invalid(`is ${size} bytes; at most ${MAX_CAPABILITY_FILE_BYTES}`);
  const buf = Buffer.alloc(size);
  let got = 0;
  try {
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
  } catch (err) {
    throw invalid(`cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(buf.subarray(0, got).toString('utf8'));
  } catch (err) {
    throw invalid(`is not JSON: ${(err as Error).message}`);
  }
  const parsed = CapabilitiesSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`is not valid: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  return parsed.data;
}
