/**
 * A bundle's own backup or restore hook (onBackupEx/onBackup, onRestoreEx/onRestore),
 * run as an activity. The bundle's deadline is the hook's one time limit: the
 * activity gets only a safety cap, and the lifecycle's deadline race cancels it
 * (which kills the hook's process group), so updateTimer reaches a running hook.
 */
import { proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { createActivities } from '../../activities/index.js';
import { MAX_TIMEOUT_MS, preferredHook, type HookKind } from '../../common/rules.js';
import { bundleActivityOptions } from './lifecycle.js';

const { runBundleHook } = proxyActivities<ReturnType<typeof createActivities>>(bundleActivityOptions);

export interface HookCall {
  sessionWorkflowId: string;
  /** The device bundle whose hook runs. */
  bundleName: string;
  /** The tool's `infos[i]` string, on the hook's stdin. */
  input?: string;
  /** BackupParams.parameters. */
  parameters?: string;
}

/** Runs the hook of `kind` the bundle declares (`hooks`, from prepareBundle); answers its output, '' when it has none. */
export async function runPreferredHook(hooks: readonly string[], kind: HookKind, call: HookCall): Promise<string> {
  const hook = preferredHook(hooks, kind);
  if (!hook) return '';
  setCurrentDetails(`running hook ${hook}`);
  const run = await runBundleHook({ ...call, hook, timeoutMs: MAX_TIMEOUT_MS });
  return run.output;
}
