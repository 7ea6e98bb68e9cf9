/**
 * A device worker's record (`ohbackup devices`): at start, the worker signals
 * its device's record workflow (started if missing) with what it serves —
 * version, task queue, repository aliases by name. Liveness and "last seen"
 * come from the task queue's pollers, so nothing needs refreshing here.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { Client } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import { DEVICE_RECORD_WORKFLOW, deviceRecordId, type DeviceRecord } from '../common/deviceRun.js';
import { deviceRecordSignal, type DeviceRecordWorkflow } from '../common/messages.js';
import { repositoryAliasNames } from '../config/repository.js';

export function ohbackupVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export async function announceDevice(opts: {
  connection: NativeConnection;
  namespace: string;
  device: string;
  taskQueue: string;
  identity?: string;
}): Promise<void> {
  const client = new Client({ connection: opts.connection, namespace: opts.namespace });
  const record: DeviceRecord = {
    device: opts.device,
    taskQueue: opts.taskQueue,
    version: ohbackupVersion(),
    repositories: repositoryAliasNames(),
    startedAt: new Date().toISOString(),
    identity: opts.identity ?? `${process.pid}@${os.hostname()}`,
  };
  await client.workflow.signalWithStart<DeviceRecordWorkflow, [DeviceRecord]>(DEVICE_RECORD_WORKFLOW, {
    workflowId: deviceRecordId(opts.device),
    taskQueue: opts.taskQueue,
    args: [record],
    signal: deviceRecordSignal,
    signalArgs: [record],
    staticSummary: `ohbackup device ${opts.device}`,
  });
}
