/**
 * A session's side of the device's bundle claims (13500013): one claim
 * request per appendBundles call, one release when the session ends. Called
 * from the session workflow only.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { createActivities } from '../../activities/index.js';
import { deviceKey } from '../../common/deviceKey.js';
import { ErrorCode, errorInfo, type ErrorInfo } from '../../common/errors.js';
import type { ClaimAnswer } from '../../common/messages.js';

// A regular activity, never a local one: the claim waits for the device's claim workflow, whose task needs a
// workflow task slot of a worker on this queue. As a local activity it held its session's slot meanwhile, and as many
// sessions appending at once as the worker has slots (40 by default) waited for each other forever.
const claimActivities = proxyActivities<ReturnType<typeof createActivities>>({
  // The claim waits for the device's claim workflow, which may itself look a holder up.
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '200 ms', maximumInterval: '5 seconds' },
});

/** The device this session works on: the device's own task queue when the session names one, else its task queue. */
function sessionDevice(deviceQueue?: string): string {
  return deviceKey(deviceQueue ?? workflowInfo().taskQueue);
}

/**
 * Claims the device bundles `bundleNames` for this session; answers, for each
 * one another running session holds, its 13500013 error. `callNo` numbers the
 * session's appendBundles calls, so a retried claim joins the first attempt.
 */
export async function claimSessionBundles(bundleNames: string[], callNo: number, deviceQueue?: string): Promise<Map<string, ErrorInfo>> {
  if (bundleNames.length === 0) return new Map();
  const info = workflowInfo();
  const answer = await claimActivities.claimBundles({
    deviceKey: sessionDevice(deviceQueue),
    taskQueue: info.taskQueue,
    sessionWorkflowId: info.workflowId,
    bundleNames,
    // Unique to this session (its first run) and call, stable across retries and continue-as-new.
    claimId: `${info.workflowId}/${info.firstExecutionRunId}/append-${callNo}`,
  });
  return new Map(answer.held.map((h) => [h.bundleName, errorInfo(ErrorCode.SESSION_CONFLICT, conflictDetail(h))]));
}

/** Names the holder, since when, and how to free it: a session whose tool is gone holds its bundles until its tool timeout. */
function conflictDetail(h: ClaimAnswer['held'][number]): string {
  const since = h.since !== undefined ? ` since ${new Date(h.since).toISOString()}` : '';
  return `${h.bundleName} is already in the active session ${h.sessionWorkflowId}${since}; \`ohbackup release ${h.sessionWorkflowId}\` frees it`;
}

/** Frees every bundle this session claimed on its device. */
export async function releaseSessionBundles(deviceQueue?: string): Promise<void> {
  await claimActivities.releaseBundleClaims({ deviceKey: sessionDevice(deviceQueue), sessionWorkflowId: workflowInfo().workflowId });
}
