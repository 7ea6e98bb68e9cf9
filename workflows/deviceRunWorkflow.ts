/**
 * A device-side run (common/deviceRun.ts): one long activity on the device's
 * own worker plays the tool's part (session, repository), as a scheduled run
 * does. The operator's command follows the activity's heartbeats; cancelling
 * the workflow cancels the activity, which releases its session before the
 * workflow ends. A worker killed mid-run: the activity is retried on the
 * restarted worker, which releases the first attempt's session and runs again.
 */
import { ActivityCancellationType, ApplicationFailure, proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import { DEVICE_RUN_FAILED, DEVICE_RUN_SETUP, type DeviceRunRequest, type DeviceRunResult } from '../common/deviceRun.js';
import type { DeviceRunWorkflow } from '../common/messages.js';

const { runDeviceRun } = proxyActivities<ReturnType<typeof createActivities>>({
  // A generous bound: the heartbeat, not this, notices a dead worker.
  startToCloseTimeout: '7 days',
  heartbeatTimeout: '15 seconds',
  retry: { maximumAttempts: 5, initialInterval: '2 seconds', nonRetryableErrorTypes: [DEVICE_RUN_SETUP] },
  // The workflow ends only once the activity has released its session.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

export async function deviceRunWorkflow(request: DeviceRunRequest): Promise<DeviceRunResult> {
  setCurrentDetails(`${request.kind} on device ${request.device}, repository "${request.repository}": running`);
  const result = await runDeviceRun(request);
  const what = result.summary?.text ?? `${result.bundles.length} bundles, ${result.files} files, ${result.bytes} bytes`;
  const snapshot = result.snapshot ? `, snapshot ${result.snapshot.shortId}` : '';
  setCurrentDetails(`${result.outcome}: ${what}${snapshot} (device ${result.device}, repository "${result.repository}")`);
  if (result.outcome === 'failed') {
    const why = result.error?.message ?? result.bundles.map((b) => `${b.bundleName}: ${b.error?.message ?? b.state}`).join('; ');
    throw ApplicationFailure.create({ type: DEVICE_RUN_FAILED, message: `the ${result.kind} did nothing: ${why}`, details: [result], nonRetryable: true });
  }
  return result;
}

void (deviceRunWorkflow satisfies DeviceRunWorkflow);
