/** One-shot device requests (hooks, temp cleanup) run as short workflows on the device's task queue. */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { HookName } from '../common/device.js';
import type { BundleHookWorkflow, CleanBundleTempWorkflow } from '../common/messages.js';

/** A query hook's time limit: these answer questions, they do no work. */
const QUERY_HOOK_TIMEOUT_MS = 30_000;

export function askBundleHook(client: Client, taskQueue: string, bundleName: string, hook: HookName, input?: string): Promise<string> {
  return client.workflow.execute<BundleHookWorkflow>('bundleHookWorkflow', {
    taskQueue,
    workflowId: `ohbackup-hook-${randomUUID()}`,
    args: [{ bundleName, hook, input, timeoutMs: QUERY_HOOK_TIMEOUT_MS }],
    staticSummary: `${hook} of ${bundleName}`,
  });
}

export function cleanBundleTemp(client: Client, taskQueue: string, bundleName: string): Promise<boolean> {
  return client.workflow.execute<CleanBundleTempWorkflow>('cleanBundleTempWorkflow', {
    taskQueue,
    workflowId: `ohbackup-clean-${randomUUID()}`,
    args: [{ bundleName }],
    staticSummary: `cleanBundleTempDir ${bundleName}`,
  });
}
