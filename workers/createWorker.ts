/** Builds the ohbackup worker of one device: its workflows and activities on one task queue. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type DeviceConfig } from '../activities/index.js';
import { metricsSinks } from '../activities/metrics.js';
import { toolBegunSinks } from '../activities/toolBegunMarks.js';

export interface OhbackupWorkerOptions extends DeviceConfig {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  /** A pre-built workflow bundle (tests build one and share it); else workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  identity?: string;
  /** Activities run at once (default: the SDK's). */
  maxConcurrentActivities?: number;
}

/** The workflows' entry: the TypeScript source under vitest, the compiled file when built. */
export function workflowsPath(): string {
  const ts = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
  return existsSync(ts) ? ts : fileURLToPath(new URL('../workflows/index.js', import.meta.url));
}

/** The workflow bundle `npm run build` makes (scripts/bundleWorkflows.js), when running the compiled code. */
function prebuiltWorkflowBundle(): string | undefined {
  const js = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));
  return workflowsPath().endsWith('.js') && existsSync(js) ? js : undefined;
}

export async function createOhbackupWorker(opts: OhbackupWorkerOptions): Promise<Worker> {
  const prebuilt = opts.workflowBundle ? undefined : prebuiltWorkflowBundle();
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.maxConcurrentActivities ? { maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities } : {}),
    activities: createActivities({ dataRoot: opts.dataRoot, stateDir: opts.stateDir }),
    sinks: { ...metricsSinks(), ...toolBegunSinks() },
    ...(opts.workflowBundle
      ? { workflowBundle: opts.workflowBundle }
      : prebuilt
        ? { workflowBundle: { codePath: prebuilt } }
        : { workflowsPath: workflowsPath(), bundlerOptions: bundlerOptions() }),
    // Cancellation (cancel, deadline, release) reaches a running activity at its next heartbeat: keep that prompt.
    maxHeartbeatThrottleInterval: '1 second',
    defaultHeartbeatThrottleInterval: '1 second',
  });
}

/**
 * Lets webpack resolve the `.js` specifiers of our ESM sources to their `.ts` files, and preloads the workflows
 * (see sharedWorkflowModules).
 */
export function bundlerOptions(): WorkerOptions['bundlerOptions'] {
  return {
    preloadModules: sharedWorkflowModules(workflowsPath()),
    webpackConfigHook: (config) => {
      config.resolve = { ...config.resolve, extensionAlias: { '.js': ['.ts', '.js'] } };
      return config;
    },
  };
}

/**
 * The modules the workflow thread's one V8 context evaluates once, before any workflow, and shares: the workflows
 * entry and all it imports. Without this, every new workflow (every bundle child) evaluates them again. Shared
 * modules are frozen, so they must keep no per-workflow state at module scope: ours hold constants, definitions
 * (defineSignal and the like) and proxyActivities proxies, which look up the running workflow only when called.
 */
export function sharedWorkflowModules(entry: string): string[] {
  return [entry];
}
