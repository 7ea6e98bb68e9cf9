/**
 * A worker for a data root on this machine, inside the process of the command
 * that needs it (`ohbackup restore --to`, the demo) on a private task queue:
 * `ready` once it polls, `stopped` if it ends by itself, `stop()` after the
 * command has released its session.
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { BusinessError } from '../common/businessError.js';
import { readSettings } from '../config/env.js';
import { ErrorCode } from '../common/errors.js';
import { runWorker } from './runWorker.js';

export interface EmbeddedWorker {
  taskQueue: string;
  /** Resolves once the worker polls; rejects (with an Error saying why) if it ends before. */
  ready: Promise<void>;
  /** Resolves if the worker ends by itself (not by `stop`), with the failure it means for a session it served. */
  stopped: Promise<BusinessError>;
  stop(): Promise<void>;
}

/** Creates the data root (0700) if missing, then starts its worker. */
export async function startWorker(dataRoot: string): Promise<EmbeddedWorker> {
  await mkdir(dataRoot, { recursive: true, mode: 0o700 });
  const taskQueue = `ohbackup-restore-${randomUUID()}`;
  const abort = new AbortController();
  let onReady!: () => void;
  const polling = new Promise<void>((resolve) => (onReady = resolve));
  const run = runWorker({ settings: { ...readSettings(), taskQueue }, dataRoot, signal: abort.signal, onReady, embedded: true });
  // Observed through `ready` / `stopped`; keep the bare promise from counting as unhandled.
  run.catch(() => undefined);
  const ready = Promise.race([
    polling,
    run.then(
      () => Promise.reject(new Error('The restore worker stopped before it started.')),
      (err: unknown) => Promise.reject(new Error(`The restore worker for ${dataRoot} could not start: ${(err as Error)?.message ?? err}`)),
    ),
  ]);
  ready.catch(() => undefined);
  const stopped = run.then(
    () => new BusinessError(ErrorCode.TASK_FAILED, 'The restore worker stopped'),
    (err: unknown) => new BusinessError(ErrorCode.TASK_FAILED, `The restore worker failed: ${(err as Error)?.message ?? err}`),
  );
  return {
    taskQueue,
    ready,
    stopped,
    async stop() {
      abort.abort();
      await run.catch(() => undefined);
    },
  };
}
