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
  /** Worker side: the device this worker serves (OHBACKUP_DEVICE, as `ohbackup worker --device`); see common/deviceQueue.ts. */
  device?: string;
  /** The tool side: fds a session's pump may have handed over and not seen closed (OHBACKUP_MAX_OPEN_FDS). */
  maxOpenFds: number;
  /** The tool side: how long delivery waits at that cap for the tool to close one (OHBACKUP_FD_WAIT_MS). */
  fdWaitMs: number;
  /** A workflow bundle built ahead of time (bundleWorkflowCode): the worker starts without bundling its workflows. */
  workflowBundle?: string;
}

/** A whole number ≥ min from the environment, or the default when unset or not one. */
function intSetting(value: string | undefined, min: number, fallback: number): number {
  const n = value === undefined || value.trim() === '' ? Number.NaN : Number(value);
  return Number.isSafeInteger(n) && n >= min ? n : fallback;
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  return {
    dataRoot: env.OHBACKUP_DATA_ROOT ? path.resolve(env.OHBACKUP_DATA_ROOT) : undefined,
    stateDir: path.resolve(env.OHBACKUP_STATE_DIR ?? '.ohbackup'),
    taskQueue: env.OHBACKUP_TASK_QUEUE ?? 'ohbackup',
    device: env.OHBACKUP_DEVICE || undefined,
    maxOpenFds: intSetting(env.OHBACKUP_MAX_OPEN_FDS, 1, 256),
    fdWaitMs: intSetting(env.OHBACKUP_FD_WAIT_MS, 0, 30_000),
    workflowBundle: env.OHBACKUP_WORKFLOW_BUNDLE ? path.resolve(env.OHBACKUP_WORKFLOW_BUNDLE) : undefined,
  };
}

export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';

/** Where the Temporal UI listens unless OHBACKUP_UI_URL says otherwise (`ohbackup dev`'s default --ui-port). */
export const DEFAULT_UI_URL = 'http://127.0.0.1:8233';

/** The Temporal UI that links point to: OHBACKUP_UI_URL (`ohbackup dev` sets it for its own worker), else DEFAULT_UI_URL. */
export function uiBaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return (env.OHBACKUP_UI_URL || DEFAULT_UI_URL).replace(/\/+$/, '');
}
