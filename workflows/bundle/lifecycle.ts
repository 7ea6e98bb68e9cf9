/**
 * What every bundle child shares, backup or restore: it begins (or is
 * rejected) exactly once, runs its work inside a deadline that updateTimer
 * re-arms, stops on a cancellation request (cancel, release), cleans its
 * half-made data, and ends exactly once. The work itself is the caller's.
 * The deadline is the work's one time limit: passing it cancels the work's
 * activities (a running hook's process group is killed with its activity).
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  type ActivityOptions,
  type LocalActivityOptions,
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  proxyLocalActivities,
  setHandler,
} from '@temporalio/workflow';
import type { createActivities } from '../../activities/index.js';
import type { HookName } from '../../common/device.js';
import { bundleEventsSignal, updateTimerSignal } from '../../common/messages.js';
import { ErrorCode, FAILURE_TYPE, errorInfo, type ErrorInfo } from '../../common/errors.js';
import { DEFAULTS, type BundleRequest, type EventBody, type SessionKind } from '../../common/session.js';
import { UpdatableDeadline } from './deadline.js';
import { codedInfo } from '../../common/rules.js';

export interface BundleWorkflowInput {
  sessionId: string;
  sessionWorkflowId: string;
  kind: SessionKind;
  request: BundleRequest;
  /** Restore only: the tool already published the bundle's files before the child started. */
  published?: boolean;
  /** Backup: the send rate it starts at (the session's; default DEFAULTS.sendRate). */
  sendRate?: number;
}

/** The bundle cannot run at all (prepareBundle said why): it ends with onBundleBegin(err) + onBundleEnd(err). */
class BundleRejected extends Error {
  constructor(readonly info: ErrorInfo) {
    super(info.message);
  }
}

/** What the work is given once its bundle has begun. */
export interface BundleWork {
  /** Reports events to the session (in order). */
  report: (...events: EventBody[]) => Promise<void>;
  /**
   * Reports the bundle's begin from the workflow, without waiting for it to land. A work whose first
   * activity reports the begin itself (one signal and workflow task fewer) does not call it.
   */
  reportBegin: () => void;
  /** The session reported the begin already (reportBegin then does nothing). */
  beginReported: boolean;
  /** The hooks the device bundle declares. */
  hooks: HookName[];
  /** When the bundle's life started (epoch ms), for its result's durationMs. */
  startedAt: number;
}

class DeadlinePassed extends Error {}

/**
 * Runs the bundle's life: prepareBundle checks the device bundle (restore:
 * installs it first when the request says how), the bundle begins, then
 * `work` runs and returns the onResultReport string (undefined: its activity
 * reported the result and end). `cleanUp` drops the
 * bundle's half-made data after a failure.
 */
export async function runBundleLifecycle(
  input: BundleWorkflowInput,
  work: (ctx: BundleWork) => Promise<string | undefined>,
  cleanUp: () => Promise<void>,
): Promise<void> {
  const { bundleName } = input.request;
  const session = getExternalWorkflowHandle(input.sessionWorkflowId);
  const report = (...events: EventBody[]) => session.signal(bundleEventsSignal, events);

  const deadline = new UpdatableDeadline(DEFAULTS.bundleTimeoutMs);
  setHandler(updateTimerSignal, (ms) => deadline.moveTo(ms));

  let begun = false;
  let beginLanded: Promise<void> = Promise.resolve();
  const scope = new CancellationScope();
  const workDone = scope.run(async () => {
    const startedAt = Date.now();
    const { targetBundle, install } = input.request;
    // A backup session checked the bundle when it was appended, and reported its begin as it started this child.
    const checked = input.request.hooks;
    const prepared = checked
      ? { ok: true as const, hooks: checked as HookName[] }
      : await prepareBundle({ bundleName: targetBundle ?? bundleName, kind: input.kind, install });
    if (!prepared.ok) throw new BundleRejected(prepared.error);
    begun = true;
    // Sent without waiting for it to land, so the work goes on in the same workflow task: the session holds back
    // a bundle's events that overtake its begin, and the bundle's end is reported only after its begin has landed.
    // Outside the work's scope: cancelling the work must not cancel the begin the tool is owed.
    const reportBegin = () => {
      if (!checked) beginLanded = CancellationScope.nonCancellable(() => report({ type: 'bundleBegin', bundleName }));
    };
    return work({ report, reportBegin, beginReported: checked !== undefined, hooks: prepared.hooks, startedAt });
  });

  let failure: ErrorInfo | undefined;
  let cancelled: unknown;
  let result: string | undefined;
  try {
    result = await Promise.race([workDone, deadline.passed().then(() => Promise.reject(new DeadlinePassed()))]);
  } catch (err) {
    if (err instanceof BundleRejected) failure = err.info;
    else if (err instanceof DeadlinePassed) failure = errorInfo(ErrorCode.TIMED_OUT, `${bundleName} passed its deadline`);
    else if (isCancellation(err)) {
      cancelled = err;
      failure = errorInfo(ErrorCode.TASK_FAILED, `${bundleName} was cancelled`);
    } else failure = failureInfo(err);
  }
  if (!failure) {
    await beginLanded;
    // undefined: the work's activity reported the result and end with its last files.
    if (result !== undefined) await report({ type: 'resultReport', bundleName, result }, { type: 'bundleEnd', bundleName });
    return;
  }
  const failed = failure;
  await CancellationScope.nonCancellable(async () => {
    // Stop the work and wait until its activities have really stopped, then drop the half-made data.
    scope.cancel();
    await workDone.catch(() => undefined);
    await cleanUp().catch(() => undefined);
    await beginLanded.catch(() => undefined);
    if (!begun) await report({ type: 'bundleBegin', bundleName, error: failed });
    else {
      // Its begin may not have been reported yet (an activity that reports it was cut short): the session keeps one begin.
      const info = { resultInfo: { errorCode: failed.code, errorInfo: failed.message, type: 'ErrorInfo' } };
      await report({ type: 'bundleBegin', bundleName }, { type: 'resultReport', bundleName, result: JSON.stringify(info) });
    }
    await report({ type: 'bundleEnd', bundleName, error: failed, cancelled: cancelled !== undefined });
  });
  // Its end has landed in the session; now the child itself ends as what it was, so the UI shows it red (Failed) or
  // Canceled, filterable by ExecutionStatus. The session never awaits it as news: it knows the end already.
  if (cancelled !== undefined) throw cancelled;
  throw ApplicationFailure.create({ type: FAILURE_TYPE, message: failed.message, details: [failed.code], nonRetryable: true });
}

/** The reference code an activity failure carries, or 13500004 once retries are spent. */
function failureInfo(err: unknown): ErrorInfo {
  return codedInfo(err) ?? errorInfo(ErrorCode.EXTENSION_DIED, err instanceof Error ? err.message : String(err));
}

/** Activity options every bundle child uses for its work. */
export const bundleActivityOptions: ActivityOptions = {
  startToCloseTimeout: '4 hours',
  // Short, so a killed worker's activity is retried elsewhere within seconds.
  heartbeatTimeout: '5 seconds',
  // The bundle's end is reported only once its activities have really stopped.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '500 ms', maximumAttempts: 6, nonRetryableErrorTypes: [FAILURE_TYPE] },
};

/** Removing a bundle's temp data: quick, and retried soon if its worker dies. Run as a local activity. */
export const cleanupActivityOptions: LocalActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '200 ms', maximumAttempts: 10 },
};

/**
 * Checking a bundle before it begins (prepareBundle): reads a few small files,
 * so it runs as a local activity, in the workflow task, with no round trip of
 * its own through the server.
 */
const prepareActivityOptions: LocalActivityOptions = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '200 ms', maximumAttempts: 6, nonRetryableErrorTypes: [FAILURE_TYPE] },
};
const { prepareBundle } = proxyLocalActivities<ReturnType<typeof createActivities>>(prepareActivityOptions);
