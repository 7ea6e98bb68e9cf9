/**
 * One child workflow per bundle of a backup session: check the bundle, run
 * its backup hook, pack it, hand its files over under the send rate.
 */
import { condition, proxyActivities, proxyLocalActivities, proxySinks, setCurrentDetails, setHandler } from '@temporalio/workflow';
import { sendRateQuery, toolBegunQuery, updateSendRateSignal } from '../../common/messages.js';
import type { createActivities } from '../../activities/index.js';
import type { ToolBegunSinks } from '../../common/toolBegunSink.js';
import { DEFAULTS, processJson } from '../../common/session.js';
import { backupResultJson, clampSendRate, preferredHook } from '../../common/rules.js';
import { runPreferredHook } from './hook.js';
import { bundleActivityOptions, cleanupActivityOptions, runBundleLifecycle, type BundleWorkflowInput } from './lifecycle.js';

export type { BundleWorkflowInput } from './lifecycle.js';

const { packBundleData, handOverFiles } = proxyActivities<ReturnType<typeof createActivities>>(bundleActivityOptions);
const { cleanBundleSession } = proxyLocalActivities<ReturnType<typeof createActivities>>(cleanupActivityOptions);

export async function bundleBackupWorkflow(input: BundleWorkflowInput): Promise<void> {
  const { bundleName } = input.request;
  // The session's rate when its tool set one up front: no updateSendRate signal (a history event and a task) per bundle.
  let sendRate: number = clampSendRate(input.sendRate ?? DEFAULTS.sendRate);
  // In memory, read only by this query (common/messages.ts toolBegunQuery): the tool's mark changes no command.
  // It also reaches the pack activity's wait in this worker process, with the rate (a sink: no command either).
  const { ohbackupToolBegun } = proxySinks<ToolBegunSinks>();
  let toolBegun = false;
  setHandler(updateSendRateSignal, (rate) => {
    sendRate = clampSendRate(rate);
    // A mark not yet taken carries the rate the hand-over starts at: keep it the bundle's own (a pause included).
    if (toolBegun) ohbackupToolBegun.rateChanged(sendRate);
  });
  setHandler(sendRateQuery, () => sendRate);
  setHandler(toolBegunQuery, (begun) => {
    if (begun === true && !toolBegun) {
      toolBegun = true;
      ohbackupToolBegun.marked(sendRate);
    }
    return toolBegun ? sendRate : false;
  });

  await runBundleLifecycle(
    input,
    async ({ report, reportBegin, beginReported, hooks, startedAt }) => {
      // The bundle's own backup hook runs first (like the reference's onBackup/onBackupEx), under the deadline;
      // the tool sees the bundle begin before it. Without a hook, the pack activity reports the begin.
      const hook = preferredHook(hooks, 'backup');
      if (hook) reportBegin();
      const hookOutput = await runPreferredHook(hooks, 'backup', {
        sessionWorkflowId: input.sessionWorkflowId,
        bundleName,
        input: input.request.info,
        parameters: input.request.parameters,
      });
      setCurrentDetails('packing and handing over');
      // One activity packs and hands over (it waits, briefly, for toolBegun itself), and sends the result and
      // end with the last files: the bundle's usual path costs its child one activity and no signal of its own.
      const packed = await packBundleData({
        sessionId: input.sessionId,
        sessionWorkflowId: input.sessionWorkflowId,
        bundleName,
        kind: input.kind,
        baseManifestPath: input.request.baseManifestPath,
        baseTime: input.request.lastIncrementalTime,
        reportBegin: !hook && !beginReported,
        hookOutput,
        startedAt,
      });
      let next = packed.next;
      while (next < packed.handOver) {
        // Paused (rate 0): a durable wait with no activity running; progress still reported every 5 s.
        const paused = () =>
          report({ type: 'process', bundleName, process: processJson(`paused at ${next}/${packed.handOver} files`, Date.now()), paused: true });
        if (sendRate === 0) {
          setCurrentDetails(`paused (rate 0) at file ${next} of ${packed.handOver}`);
          await paused();
        }
        while (!(await condition(() => sendRate > 0, '5 seconds'))) await paused();
        setCurrentDetails(`handing over from file ${next} of ${packed.handOver}`);
        // The rate as this workflow holds it now (it includes the tool's own): saves the activity a first query.
        const handedOver = await handOverFiles({
          sessionId: input.sessionId,
          sessionWorkflowId: input.sessionWorkflowId,
          bundleName,
          from: next,
          kind: input.kind,
          sendRate,
        });
        next = handedOver.next;
      }
      setCurrentDetails(`done: ${packed.files} files, ${packed.bytes} bytes`);
      if (packed.ended) return undefined;
      return backupResultJson(bundleName, input.kind === 'incremental', hookOutput, packed, Date.now() - startedAt);
    },
    () => cleanBundleSession({ sessionId: input.sessionId, bundleName }),
  );
}
