/**
 * One run of an `ohbackup schedule`: no tool process is attached to it, so a
 * single long activity on the device's worker plays the tool's part (starts
 * the backup session, receives its files into a new set in the destination,
 * releases it). The session is its own workflow, visible as any other.
 */
import { ApplicationFailure, proxyActivities, setCurrentDetails, workflowInfo } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import type { ScheduledBackupWorkflow } from '../common/messages.js';
import { SCHEDULED_BACKUP_FAILED, scheduledSetName, type ScheduledBackupRequest, type ScheduledBackupSummary } from '../common/scheduledBackup.js';

const { runScheduledBackup } = proxyActivities<ReturnType<typeof createActivities>>({
  // A generous bound: the heartbeat, not this, notices a dead worker.
  startToCloseTimeout: '7 days',
  heartbeatTimeout: '1 minute',
  // A retry releases the earlier attempt's session and writes the set again.
  retry: { maximumAttempts: 3, initialInterval: '10 seconds' },
});

export async function scheduledBackupWorkflow(request: ScheduledBackupRequest): Promise<ScheduledBackupSummary> {
  const { runStartTime, runId } = workflowInfo();
  const setName = scheduledSetName(runStartTime, runId);
  setCurrentDetails(request.dest !== undefined ? `backing up into ${request.dest}/${setName}` : `backing up into repository ${request.repository}`);
  const summary = await runScheduledBackup({ ...request, setName });
  setCurrentDetails(`${summary.outcome}: ${summary.files} files, ${summary.bytes} bytes into ${summary.set} (session ${summary.sessionId})`);
  if (summary.outcome === 'failed') {
    // A run that backed nothing up is a failed run in the UI and in `schedule describe`; the summary stays readable.
    const why = summary.error?.message ?? summary.bundles.map((b) => `${b.bundleName}: ${b.error?.message ?? b.state}`).join('; ');
    throw ApplicationFailure.create({
      type: SCHEDULED_BACKUP_FAILED,
      message: `no bundle was backed up into ${summary.set}: ${why}`,
      details: [summary],
      nonRetryable: true,
    });
  }
  return summary;
}

void (scheduledBackupWorkflow satisfies ScheduledBackupWorkflow);
