/** Where a restore runs: the configured device's workers, or a worker of our own for a data root given with --to. */
import type { Client } from '@temporalio/client';
import { taskQueue } from '../client/connection.js';
import type { RunRestoreOptions } from '../client/runs/runRestore.js';
import { SetupError, connect, waitForWorkers } from '../client/runs/setup.js';
import { whenAborted } from '../client/runs/tally.js';

/** Runs `run` against the configured device's workers, or (with `to`) a worker of our own for that data root, stopped after. */
export async function onTarget<R>(
  to: string | undefined,
  signal: AbortSignal,
  run: (target: Pick<RunRestoreOptions, 'client' | 'taskQueue' | 'workerStopped'> & { client: Client; taskQueue: string }) => Promise<R>,
): Promise<R> {
  const client = await connect();
  if (to === undefined) {
    await waitForWorkers(client).catch((err: unknown) => {
      if (err instanceof SetupError) err.message += '\nOr restore onto a data root on this machine: `ohbackup restore --from SET --to DIR`.';
      throw err;
    });
    return run({ client, taskQueue: taskQueue() });
  }
  // Loaded only for --to: a restore to the served device starts without the worker SDK.
  const { startWorker } = await import('../workers/embedded.js');
  const worker = await startWorker(to);
  try {
    // Building the worker (bundling its workflows) takes seconds: an interruption meanwhile ends the run here.
    await Promise.race([worker.ready.catch((err: Error) => Promise.reject(new SetupError(err.message, 'failed'))), whenAborted(signal)]);
    return await run({ client, taskQueue: worker.taskQueue, workerStopped: worker.stopped });
  } finally {
    await worker.stop();
  }
}
