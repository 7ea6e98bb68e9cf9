/**
 * One child workflow per bundle of a restore session: check the target
 * bundle, wait (under the deadline) for the tool to write the bundle's files
 * and publish them, then verify, unpack and apply them, and run the bundle's
 * restore hook.
 */
import { condition, proxyActivities, proxyLocalActivities, setCurrentDetails, setHandler } from '@temporalio/workflow';
import { publishSignal } from '../../common/messages.js';
import type { createActivities } from '../../activities/index.js';
import { processJson } from '../../common/session.js';
import { bundleActivityOptions, cleanupActivityOptions, runBundleLifecycle, type BundleWorkflowInput } from './lifecycle.js';
import { runPreferredHook } from './hook.js';

const { applyRestoreData } = proxyActivities<ReturnType<typeof createActivities>>(bundleActivityOptions);
const { cleanRestoreSession } = proxyLocalActivities<ReturnType<typeof createActivities>>(cleanupActivityOptions);

export async function bundleRestoreWorkflow(input: BundleWorkflowInput): Promise<void> {
  const { bundleName } = input.request;
  const target = input.request.targetBundle ?? bundleName;
  let published = input.published ?? false;
  setHandler(publishSignal, () => {
    published = true;
  });

  await runBundleLifecycle(
    input,
    async ({ report, reportBegin, hooks, startedAt }) => {
      reportBegin();
      setCurrentDetails('waiting for the tool to write the files and publish them');
      while (!(await condition(() => published, '5 seconds'))) {
        await report({ type: 'process', bundleName, process: processJson('waiting for the tool to write the files and publish them', Date.now()) });
      }
      setCurrentDetails('verifying and applying');
      const applied = await applyRestoreData({
        sessionId: input.sessionId,
        sessionWorkflowId: input.sessionWorkflowId,
        bundleName: target,
        keepPrevious: input.request.keepPrevious,
      });
      // The bundle's own restore hook runs once its data is in place, under the deadline.
      const hookOutput = await runPreferredHook(hooks, 'restore', {
        sessionWorkflowId: input.sessionWorkflowId,
        bundleName: target,
        input: input.request.info,
      });
      setCurrentDetails(`done: ${applied.files} files, ${applied.bytes} bytes into ${applied.appliedTo}`);
      return (
        hookOutput ||
        JSON.stringify({
          bundleName,
          targetBundle: target,
          files: applied.files,
          dirs: applied.dirs,
          bytes: applied.bytes,
          appliedTo: applied.appliedTo,
          durationMs: Date.now() - startedAt,
        })
      );
    },
    () => cleanRestoreSession({ sessionId: input.sessionId, bundleName: target }),
  );
}
