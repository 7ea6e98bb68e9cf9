/**
 * The activities behind a device's bundle claims (13500013): a session claims
 * and releases its bundles through the device's claim workflow, and that
 * workflow asks which of its holders still run.
 */
import { Context } from '@temporalio/activity';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { bundleClaimWorkflowId } from '../common/deviceKey.js';

import { claimBundlesUpdate, releaseBundleClaimsUpdate, type BundleClaimWorkflow, type ClaimAnswer } from '../common/messages.js';

export function createClaimActivities() {
  return {
    /**
     * Claims `bundleNames` for the session on the device `deviceKey`, starting
     * the device's claim workflow if it is not running. `claimId` names the
     * request: a retried attempt joins the first one instead of asking again.
     */
    async claimBundles(input: {
      deviceKey: string;
      taskQueue: string;
      sessionWorkflowId: string;
      bundleNames: string[];
      claimId: string;
    }): Promise<ClaimAnswer> {
      const { client } = Context.current();
      const start = new WithStartWorkflowOperation<BundleClaimWorkflow>('bundleClaimWorkflow', {
        workflowId: bundleClaimWorkflowId(input.deviceKey),
        taskQueue: input.taskQueue,
        args: [{ deviceKey: input.deviceKey }],
        workflowIdConflictPolicy: 'USE_EXISTING',
        staticSummary: `ohbackup bundle claims of ${input.deviceKey}`,
      });
      return client.workflow.executeUpdateWithStart(claimBundlesUpdate, {
        args: [{ sessionWorkflowId: input.sessionWorkflowId, bundleNames: input.bundleNames }],
        updateId: input.claimId,
        startWorkflowOperation: start,
      });
    },

    /** Releases every claim the session holds on the device; nothing to do if the claim workflow is not running. */
    async releaseBundleClaims(input: { deviceKey: string; sessionWorkflowId: string }): Promise<number> {
      const { client } = Context.current();
      try {
        return await client.workflow
          .getHandle(bundleClaimWorkflowId(input.deviceKey))
          .executeUpdate(releaseBundleClaimsUpdate, { args: [input.sessionWorkflowId] });
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return 0;
        throw err;
      }
    },

    /** Which of these session workflows are running (a continued-as-new session counts as its latest run). */
    async runningSessions(input: { workflowIds: string[] }): Promise<string[]> {
      const { client } = Context.current();
      const running: string[] = [];
      for (const id of input.workflowIds) {
        try {
          const d = await client.workflow.getHandle(id).describe();
          if (d.status.name === 'RUNNING') running.push(id);
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
      }
      return running;
    },
  };
}
