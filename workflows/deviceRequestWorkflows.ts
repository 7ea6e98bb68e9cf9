/**
 * One-shot requests a tool makes of a device outside any session
 * (getLocalCapabilities, getBackupInfo, getCompatibilityInfo,
 * cleanBundleTempDir): each a short workflow running one activity on the
 * device's task queue, so they show in the Temporal UI like everything else.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import type { BundleHookWorkflow, CapabilitiesWorkflow, CleanBundleTempWorkflow } from '../common/messages.js';

const { writeCapabilities, runBundleHook, cleanBundleTempDir } = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { maximumAttempts: 3 },
});

/** Names the capability file the device's worker wrote. */
export async function capabilitiesWorkflow(input: Parameters<CapabilitiesWorkflow>[0]): Promise<string> {
  return writeCapabilities(input);
}

/** The output of one of the bundle's query hooks; '' when it declares none. */
export async function bundleHookWorkflow(input: Parameters<BundleHookWorkflow>[0]): Promise<string> {
  return (await runBundleHook(input)).output;
}

export async function cleanBundleTempWorkflow(input: { bundleName: string }): Promise<boolean> {
  return cleanBundleTempDir(input);
}

// The tool starts these by name with the signatures in common/messages.ts; this keeps them the same.
void (capabilitiesWorkflow satisfies CapabilitiesWorkflow);
void (bundleHookWorkflow satisfies BundleHookWorkflow);
void (cleanBundleTempWorkflow satisfies CleanBundleTempWorkflow);
