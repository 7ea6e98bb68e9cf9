/** Answers `getLocalCapabilities`: the device's worker writes the capability file and names it. */
import { proxyActivities } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';

const { writeCapabilities } = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 3 },
});

export async function capabilitiesWorkflow(input: { only?: Array<{ bundleName: string; lastIncrementalTime: number }> }): Promise<string> {
  return writeCapabilities(input);
}
