/**
 * The tool's connection to Temporal: one lazily made Client per process, from
 * Temporal's standard environment configuration unless `configure` says otherwise.
 */
import { Client, Connection } from '@temporalio/client';
import { BusinessError } from '../common/businessError.js';
import { readSettings } from '../config/env.js';
import { DeviceIdSchema, workerTaskQueue } from '../common/deviceQueue.js';
import { ErrorCode } from '../common/errors.js';
import { toBusinessError } from './failures.js';
import { temporalTarget } from '../config/temporalConfig.js';
import { parseArg } from './validate.js';

export interface ToolOptions {
  /** host:port of the Temporal frontend (default: TEMPORAL_ADDRESS, else 127.0.0.1:7233). */
  address?: string;
  namespace?: string;
  /** The device's task queue (default: OHBACKUP_TASK_QUEUE, else "ohbackup"). */
  taskQueue?: string;
  /**
   * A device among several, each with its own worker (`ohbackup worker
   * --device ID`): sessions run on `taskQueue`, their bundle work and the
   * module's device requests on that device's own queue.
   */
  device?: string;
  /** Use this Client instead of making one. */
  client?: Client;
}

let options: ToolOptions = {};
let cached: Promise<Client> | undefined;

/** Points the module's functions and new sessions at a Temporal service and device. */
export function configure(next: ToolOptions): void {
  if (next.device !== undefined) parseArg(DeviceIdSchema, next.device, 'device');
  options = { ...next };
  cached = undefined;
}

export function taskQueue(): string {
  return options.taskQueue ?? readSettings().taskQueue;
}

/** The device `configure` named, if any. */
export function device(): string | undefined {
  return options.device;
}

/** Where device work goes: the named device's own queue, else the task queue. */
export function deviceQueue(): string {
  return workerTaskQueue(taskQueue(), options.device);
}

export function getClient(): Promise<Client> {
  if (options.client) return Promise.resolve(options.client);
  cached ??= (async () => {
    const target = temporalTarget({ address: options.address, namespace: options.namespace });
    const { address, tls, apiKey, metadata } = target.connectionOptions;
    try {
      const connection = await Connection.connect({ address, tls, apiKey: typeof apiKey === 'string' ? apiKey : undefined, metadata });
      return new Client({ connection, namespace: target.namespace });
    } catch (err) {
      // Refused credentials stay 201; anything else means the service could not be reached (api.md §6: 13600001).
      const e = toBusinessError(err);
      if (e.code === ErrorCode.PERMISSION_DENIED) throw e;
      throw new BusinessError(ErrorCode.IPC_ERROR, `IPC error: cannot reach the Temporal service at ${address}: ${(err as Error)?.message ?? err}`);
    }
  })();
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

/** Closes the module's connection so a tool process can exit. */
export async function closeConnection(): Promise<void> {
  const c = cached;
  cached = undefined;
  if (c) await (await c).connection.close();
}
