/** A real worker process (`node dist/workers/main.js`), to be killed with SIGKILL and started again. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { temporalAddress } from './temporal.js';

const MAIN = fileURLToPath(new URL('../../dist/workers/main.js', import.meta.url));

export interface WorkerProcess {
  child: ChildProcess;
  output: () => string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function startWorkerProcess(opts: {
  taskQueue: string;
  dataRoot: string;
  stateDir: string;
  address?: string;
  env?: Record<string, string>;
  /** Use the workflow bundle the test setup built, sparing the process its own bundling (seconds under load). */
  prebuiltWorkflows?: boolean;
}): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      MALLOC_ARENA_MAX: '2', // as bin/ohbackup starts workers
      MALLOC_MMAP_THRESHOLD_: '262144',
      ...process.env,
      TEMPORAL_ADDRESS: opts.address ?? temporalAddress(),
      OHBACKUP_TASK_QUEUE: opts.taskQueue,
      OHBACKUP_DATA_ROOT: opts.dataRoot,
      OHBACKUP_STATE_DIR: opts.stateDir,
      ...(opts.prebuiltWorkflows ? { OHBACKUP_WORKFLOW_BUNDLE: inject('workflowBundlePath') } : {}),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('ohbackup worker ready')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`worker exited (${code}) before it was ready:\n${out}`)));
  });
  return {
    child,
    output: () => out,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
