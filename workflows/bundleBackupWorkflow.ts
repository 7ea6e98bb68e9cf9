/**
 * One child workflow per bundle of a backup session: check the bundle, pack
 * it, hand its files over under the send rate, report the result. Its
 * deadline (updateTimer) bounds the work; a cancellation request (cancel or
 * release) stops it. Whatever happens, it reports exactly one bundleEnd.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
} from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import { ErrorCode, FAILURE_TYPE, errorInfo, type ErrorInfo } from '../common/errors.js';
import { DEFAULTS, processJson, type BundleRequest, type EventBody, type SessionKind } from '../common/session.js';

export interface BundleWorkflowInput {
  sessionId: string;
  sessionWorkflowId: string;
  kind: SessionKind;
  request: BundleRequest;
}

/** updateTimer: re-arms the bundle's deadline to `ms` from now. */
export const updateTimerSignal = defineSignal<[number]>('updateTimer');
/** updateSendRate: files per second handed to the tool; 0 pauses. */
export const updateSendRateSignal = defineSignal<[number]>('updateSendRate');
/** The hand-over activity reads the current rate through this query. */
export const sendRateQuery = defineQuery<number>('sendRate');

const { prepareBundle, packBundleData, handOverFiles, runBundleHook } = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '4 hours',
  // Short, so a killed worker's activity is retried elsewhere within seconds.
  heartbeatTimeout: '5 seconds',
  // The bundle's end is reported only once its activities have really stopped.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '500 ms', maximumAttempts: 6, nonRetryableErrorTypes: [FAILURE_TYPE] },
});
const { cleanBundleSession } = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 3 },
});

class DeadlinePassed extends Error {}
class BundleRejected extends Error {
  constructor(readonly info: ErrorInfo) {
    super(info.message);
  }
}

export async function bundleBackupWorkflow(input: BundleWorkflowInput): Promise<void> {
  const { bundleName } = input.request;
  const session = getExternalWorkflowHandle(input.sessionWorkflowId);
  const report = (...events: EventBody[]) => session.signal('bundleEvents', events);

  let deadline = Date.now() + DEFAULTS.bundleTimeoutMs;
  let sendRate: number = DEFAULTS.sendRate;
  setHandler(updateTimerSignal, (ms) => {
    deadline = Date.now() + ms;
  });
  setHandler(updateSendRateSignal, (rate) => {
    sendRate = Math.min(Math.max(0, rate), DEFAULTS.maxSendRate);
  });
  setHandler(sendRateQuery, () => sendRate);

  const started = Date.now();
  let begun = false;
  const work = new CancellationScope();
  const workDone = work.run(async () => {
    const prepared = await prepareBundle({ bundleName, kind: input.kind });
    if (!prepared.ok) throw new BundleRejected(prepared.error);
    // The begin event must reach the session before any file event the activities send.
    await report({ type: 'bundleBegin', bundleName });
    begun = true;
    // The bundle's own backup hook runs first (like the reference's onBackup/onBackupEx), under the deadline.
    const hook = prepared.hooks.includes('onBackupEx') ? 'onBackupEx' : prepared.hooks.includes('onBackup') ? 'onBackup' : undefined;
    let hookOutput = '';
    if (hook) {
      setCurrentDetails(`running hook ${hook}`);
      const r = await runBundleHook({ sessionWorkflowId: input.sessionWorkflowId, bundleName, hook, input: input.request.info, timeoutMs: Math.max(1, deadline - Date.now()) });
      hookOutput = r.output;
    }
    setCurrentDetails('packing');
    const packed = await packBundleData({ sessionId: input.sessionId, sessionWorkflowId: input.sessionWorkflowId, bundleName });
    let next = 0;
    while (next < packed.handOver) {
      // Paused (rate 0): a durable wait with no activity running; progress still reported every 5 s.
      while (!(await condition(() => sendRate > 0, '5 seconds'))) {
        await report({ type: 'process', bundleName, process: processJson(`paused at ${next}/${packed.handOver} files`, Date.now()) });
      }
      setCurrentDetails(`handing over from file ${next} of ${packed.handOver}`);
      const r = await handOverFiles({ sessionId: input.sessionId, sessionWorkflowId: input.sessionWorkflowId, bundleName, from: next });
      next = r.next;
    }
    await report({
      type: 'resultReport',
      bundleName,
      result: hookOutput || JSON.stringify({
        bundleName,
        files: packed.files,
        dirs: packed.dirs,
        bytes: packed.bytes,
        handedOver: packed.handOver,
        skipped: packed.skipped,
        durationMs: Date.now() - started,
      }),
    });
  });

  let end: ErrorInfo | undefined;
  let cancelled = false;
  try {
    await Promise.race([workDone, watchDeadline()]);
  } catch (err) {
    if (err instanceof BundleRejected) end = err.info;
    else if (err instanceof DeadlinePassed) end = errorInfo(ErrorCode.TIMED_OUT, `${bundleName} passed its deadline`);
    else if (isCancellation(err)) {
      cancelled = true;
      end = errorInfo(ErrorCode.TASK_FAILED, `${bundleName} was cancelled`);
    } else end = failureInfo(err);
  }
  if (!end) {
    await report({ type: 'bundleEnd', bundleName });
    return;
  }
  const failed = end;
  await CancellationScope.nonCancellable(async () => {
    // Stop the work and wait until its activities have really stopped, then drop the half-made output.
    work.cancel();
    await workDone.catch(() => undefined);
    await cleanBundleSession({ sessionId: input.sessionId, bundleName }).catch(() => undefined);
    if (!begun) await report({ type: 'bundleBegin', bundleName, error: failed });
    else {
      const result = { resultInfo: { errorCode: failed.code, errorInfo: failed.message, type: 'ErrorInfo' } };
      await report({ type: 'resultReport', bundleName, result: JSON.stringify(result) });
    }
    await report({ type: 'bundleEnd', bundleName, error: failed, cancelled });
  });

  async function watchDeadline(): Promise<never> {
    for (;;) {
      const armed = deadline;
      const moved = await condition(() => deadline !== armed, Math.max(1, armed - Date.now()));
      if (!moved) throw new DeadlinePassed();
    }
  }
}

/** The reference code an activity failure carries, or 13500004 once retries are spent. */
function failureInfo(err: unknown): ErrorInfo {
  let e: unknown = err;
  while (e && typeof e === 'object') {
    if (e instanceof ApplicationFailure && e.type === FAILURE_TYPE && typeof e.details?.[0] === 'number') {
      return { code: e.details[0] as number, message: e.message };
    }
    e = (e as { cause?: unknown }).cause;
  }
  return errorInfo(ErrorCode.EXTENSION_DIED, err instanceof Error ? err.message : String(err));
}
