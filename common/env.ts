/**
 * ohbackup's own settings, read from the environment (README "Configuration").
 * Temporal's connection settings come from Temporal's standard environment
 * configuration (@temporalio/envconfig); see client/connection.ts.
 */
import path from 'node:path';

export interface Settings {
  /** The device's data root (the worker's). */
  dataRoot?: string;
  /** Dev-server database, transfer area, bench results. */
  stateDir: string;
  taskQueue: string;
  /** A workflow bundle built ahead of time (bundleWorkflowCode): the worker starts without bundling its workflows. */
  workflowBundle?: string;
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  return {
    dataRoot: env.OHBACKUP_DATA_ROOT ? path.resolve(env.OHBACKUP_DATA_ROOT) : undefined,
    stateDir: path.resolve(env.OHBACKUP_STATE_DIR ?? '.ohbackup'),
    taskQueue: env.OHBACKUP_TASK_QUEUE ?? 'ohbackup',
    workflowBundle: env.OHBACKUP_WORKFLOW_BUNDLE ? path.resolve(env.OHBACKUP_WORKFLOW_BUNDLE) : undefined,
  };
}

export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';
