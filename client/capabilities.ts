/** getLocalCapabilities: the device's worker writes the file; the tool opens it and unlinks it, keeping only the fd. */
import { open } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { capabilitiesWorkflow } from '../workflows/deviceRequestWorkflows.js';
import type { FileData, IncrementalBackupTime } from './types.js';

const openFd = promisify(open);

export async function openCapabilities(client: Client, taskQueue: string, only?: IncrementalBackupTime[]): Promise<FileData> {
  const path = await client.workflow.execute(capabilitiesWorkflow, {
    taskQueue,
    workflowId: `ohbackup-capabilities-${randomUUID()}`,
    args: [{ only: only?.map((b) => ({ bundleName: b.bundleName, lastIncrementalTime: b.lastIncrementalTime })) }],
    staticSummary: 'getLocalCapabilities',
  });
  const fd = await openFd(path, 'r');
  await unlink(path).catch(() => undefined);
  return { fd };
}
