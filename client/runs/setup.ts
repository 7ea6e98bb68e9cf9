/**
 * What a whole run needs before its session starts: the Temporal client, a
 * worker on the device's queues, and the UI link of the session. Whatever
 * goes wrong here is a SetupError: nothing ran.
 */
import { closeSync, readFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import { CapabilitiesSchema, type Capabilities } from '../../common/capabilities.js';
import { DEFAULT_TEMPORAL_ADDRESS, uiBaseUrl } from '../../config/env.js';
import { temporalTarget } from '../../config/temporalConfig.js';
import { openCapabilities } from '../capabilities.js';
import { device, deviceQueue, getClient, taskQueue } from '../connection.js';
import { toBusinessError } from '../failures.js';

/**
 * A failure before any session ran. `usage`: the request itself is wrong (no
 * such set, a bad --out); `failed`: it cannot run (no service, no worker,
 * nothing to back up); `interrupted`: stopped before anything started.
 */
/**
 * Bundles a whole run (a backup into a set, a restore from one) runs at once. A
 * session on its own keeps the reference's 3; a run is the operator's tool, and
 * its bundles' packs and restores go to the worker's thread pool, so starting
 * more at once overlaps their round trips instead of waiting for them in waves.
 */
export const RUN_CONCURRENT_BUNDLES = 8;

export class SetupError extends Error {
  constructor(
    message: string,
    readonly kind: 'usage' | 'failed' | 'interrupted',
  ) {
    super(message);
  }
}

/** `<Temporal UI (uiBaseUrl)>/namespaces/<ns>/workflows/<sessionId>` */
export function sessionUiUrl(namespace: string, sessionId: string): string {
  return `${uiBaseUrl()}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(sessionId)}`;
}

/** True when the error says no connection to the Temporal service could be made. */
export function isConnectFailure(err: unknown): boolean {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const { name, message } = e as Error;
    if (name === 'TransportError' || /transport|connect|unavailable|ECONNREFUSED|deadline/i.test(String(message))) return true;
  }
  return false;
}

export function unreachableMessage(address: string, detail: string): string {
  return (
    `Cannot reach the Temporal service at ${address} (${detail.split('\n')[0]}).\n` +
    'Point ohbackup at a running Temporal service with TEMPORAL_ADDRESS=host:port (and TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* if it needs them),\n' +
    'or start a local one with its worker: `ohbackup dev --data-root DIR`.'
  );
}

/** The tool's Temporal client, or a SetupError saying how to reach a service. */
export async function connect(): Promise<Client> {
  try {
    return await getClient();
  } catch (err) {
    const address = temporalTarget().connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS;
    throw new SetupError(isConnectFailure(err) ? unreachableMessage(address, (err as Error).message) : String((err as Error).message ?? err), 'failed');
  }
}

/**
 * Without a worker on the device's task queue, every call would wait forever:
 * say so instead. Waits briefly, since a worker that has just started may not
 * have polled yet.
 */
export async function waitForWorker(client: Client, queue: string, waitMs = 10_000, device?: string): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const res = await client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name: queue, kind: 1 /* NORMAL */ },
      taskQueueType: 1 /* WORKFLOW */,
    });
    if (res.pollers?.length) return;
    if (Date.now() > deadline && device) {
      throw new SetupError(
        `No ohbackup worker serves device "${device}" (task queue "${queue}") in namespace ${client.options.namespace}.\n` +
          `Start one on the device: \`ohbackup worker --device ${device} --data-root DIR\`.`,
        'failed',
      );
    }
    if (Date.now() > deadline) {
      throw new SetupError(
        `No ohbackup worker serves task queue "${queue}" in namespace ${client.options.namespace}.\n` +
          'Start one for the device: `ohbackup worker --data-root DIR` (or `ohbackup dev --data-root DIR` for a local Temporal server with its worker),\n' +
          "or set OHBACKUP_TASK_QUEUE to the device's task queue.",
        'failed',
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The sessions' task queue and, when a device is named, the device's own queue: each needs a worker. */
export async function waitForWorkers(client: Client, queue = taskQueue()): Promise<void> {
  await waitForWorker(client, queue);
  const named = device();
  if (named) await waitForWorker(client, deviceQueue(), undefined, named);
}

/**
 * getLocalCapabilities: the fd of the device's capability file; we read it and close it.
 * `only`: the file of those bundles alone (its dataList, each since 0), so no other bundle is walked for its size.
 */
export async function readDeviceCapabilities(client: Client, queue: string, only?: string[]): Promise<Capabilities> {
  const dataList = only?.map((bundleName) => ({ bundleName, lastIncrementalTime: 0 }));
  const { fd } = await openCapabilities(client, queue, dataList).catch((err: unknown) => {
    throw toBusinessError(err);
  });
  let text: string;
  try {
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  const parsed = CapabilitiesSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new SetupError(`The device's capability file is not valid: ${parsed.error.issues[0]?.message}`, 'failed');
  return parsed.data;
}
