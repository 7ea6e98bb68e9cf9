/** Per-test Temporal plumbing, in the style of Temporal's samples: a Worker per test, the test inside `worker.runUntil`. */
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { WorkerLogger } from '../../workers/logFormat.js';
import { createOhbackupWorker } from '../../workers/createWorker.js';
import { backup } from '../../client/index.js';

let runtimeInstalled = false;

export function temporalAddress(): string {
  return inject('temporalAddress');
}

/** A fresh task queue per test keeps tests from serving each other's sessions. */
export function uniqueTaskQueue(name: string): string {
  return `${name}-${randomUUID().slice(0, 8)}`;
}

export async function testClient(): Promise<Client> {
  const connection = await Connection.connect({ address: temporalAddress() });
  return new Client({ connection });
}

/** Runs `fn` while an in-process ohbackup worker serves `taskQueue` for the device at `dataRoot`. */
export async function withWorker<T>(opts: { taskQueue: string; dataRoot: string; stateDir: string; address?: string }, fn: () => Promise<T>): Promise<T> {
  if (!runtimeInstalled) {
    // One line per entry, as the worker logs: a failed bundle's child is no multi-line warning here either.
    Runtime.install({
      logger: new WorkerLogger('WARN', 'text'),
      telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } },
    });
    runtimeInstalled = true;
  }
  const connection = await NativeConnection.connect({ address: opts.address ?? temporalAddress() });
  try {
    const worker = await createOhbackupWorker({
      connection,
      namespace: 'default',
      taskQueue: opts.taskQueue,
      dataRoot: opts.dataRoot,
      stateDir: opts.stateDir,
      workflowBundle: { codePath: inject('workflowBundlePath') },
    });
    return await worker.runUntil(fn());
  } finally {
    await connection.close();
  }
}

/** Points the tool library at the test server and the test's task queue. */
export function configureTool(taskQueue: string, address = temporalAddress()): void {
  backup.configure({ address, taskQueue });
}

/** Asks `probe` every 100 ms until it answers (a bounded wait on a condition of the server). */
export async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
