/**
 * The tool's begun marks as they reach this worker process, for the pack activity's wait before its hand-over
 * (activities/backup.ts). The bundle child's toolBegun query calls the ohbackupToolBegun sink here
 * (common/toolBegunSink.ts) in the process that holds the child, which is the one its pack activity runs in
 * (eager dispatch, one worker per device). Before, the activity asked the child by query every 25 ms: every
 * ask a round trip through the service and a query task on the worker, some 350 of them for 200 empty
 * bundles. A child held by another worker process marks that process, not this one: the wait still asks the
 * child, every ASK_EVERY_MS, so it also ends there.
 */
import type { InjectedSinks } from '@temporalio/worker';
import type { WorkflowInfo } from '@temporalio/workflow';
import type { ToolBegunSinks } from '../common/toolBegunSink.js';

/** The first ask, and every later one, while no mark has come here: only a child held elsewhere needs them. */
const ASK_EVERY_MS = 200;
/** Marks no wait here took (their pack ran in another process, or gave up before the tool came) are dropped oldest first. */
const MAX_UNTAKEN_MARKS = 4096;

const untaken = new Map<string, number>();
const waiting = new Map<string, (sendRate: number) => void>();

/** A bundle child's run: its pack activity's workflow execution. */
export interface ChildRun {
  namespace: string;
  workflowId: string;
  runId: string;
}

const keyOf = (run: ChildRun) => `${run.namespace}\n${run.workflowId}\n${run.runId}`;

/** The child has the tool's mark: wakes its wait, or keeps the mark for a wait that comes later. */
export function markToolBegun(run: ChildRun, sendRate: number): void {
  const key = keyOf(run);
  const wake = waiting.get(key);
  if (wake) return wake(sendRate);
  untaken.set(key, sendRate);
  if (untaken.size > MAX_UNTAKEN_MARKS) untaken.delete(untaken.keys().next().value!);
}

/** The child's rate changed after its mark: a mark not yet taken starts the hand-over at the new rate (0: paused). */
export function toolBegunRateChanged(run: ChildRun, sendRate: number): void {
  const key = keyOf(run);
  if (untaken.has(key)) untaken.set(key, sendRate);
}

export interface ToolBegunWait {
  run: ChildRun;
  /** How long to wait at most (ms): a tool that is away must not stall the bundle. */
  waitMs: number;
  signal: AbortSignal;
  /** Asks the child itself (its toolBegun query): false until the tool has marked it, then its send rate. */
  ask: () => Promise<number | false>;
  /** Called at every ask (the activity heartbeats there). */
  onAsk?: () => void;
}

/**
 * How a wait ended: `mark`, woken in this process (or the mark was here before it); `ask`, the child's own answer
 * (it is held by another process); `bound`, no mark within the wait's bound (the tool is away, or its onBundleBegin
 * slow). The worker counts them (ohbackup_tool_begun_wait_seconds): anything but `mark` delays a bundle.
 */
export type ToolBegunWaitEnd = { by: 'mark' | 'ask'; sendRate: number } | { by: 'bound' };

/**
 * Resolves with the bundle's send rate once the tool has marked it begun, or with `bound` once `waitMs` has passed
 * without (after one last ask). Rejects when `signal` aborts or an ask fails.
 */
export function waitForToolBegun(w: ToolBegunWait): Promise<ToolBegunWaitEnd> {
  const key = keyOf(w.run);
  const early = untaken.get(key);
  if (early !== undefined) {
    untaken.delete(key);
    return Promise.resolve({ by: 'mark', sendRate: early });
  }
  const until = Date.now() + w.waitMs;
  return new Promise<ToolBegunWaitEnd>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (waiting.get(key) === wake) waiting.delete(key);
      w.signal.removeEventListener('abort', onAbort);
      outcome();
    };
    const end = (how: ToolBegunWaitEnd) => settle(() => resolve(how));
    const wake = (sendRate: number) => end({ by: 'mark', sendRate });
    const onAbort = () => settle(() => reject(w.signal.reason));
    const ask = () => {
      if (settled) return;
      w.onAsk?.();
      w.ask().then(
        (answer) => {
          if (answer !== false) end({ by: 'ask', sendRate: answer });
          else if (Date.now() >= until) end({ by: 'bound' });
          else timer = setTimeout(ask, Math.min(ASK_EVERY_MS, until - Date.now()));
        },
        (err: unknown) => settle(() => reject(err)),
      );
    };
    if (w.signal.aborted) return onAbort();
    waiting.set(key, wake);
    w.signal.addEventListener('abort', onAbort, { once: true });
    timer = setTimeout(ask, Math.min(ASK_EVERY_MS, w.waitMs));
  });
}

/**
 * The worker's side of the ohbackupToolBegun sink. Let through on replay too, since a query may be answered in the
 * activation that ends one, but replay itself calls neither: only a query marks a child, and only a marked child
 * (its mark in memory, so never a replayed one) tells its rate changes.
 */
export function toolBegunSinks(): InjectedSinks<ToolBegunSinks> {
  const run = (info: WorkflowInfo): ChildRun => ({ namespace: info.namespace, workflowId: info.workflowId, runId: info.runId });
  return {
    ohbackupToolBegun: {
      marked: { fn: (info: WorkflowInfo, sendRate: number) => markToolBegun(run(info), sendRate), callDuringReplay: true },
      rateChanged: { fn: (info: WorkflowInfo, sendRate: number) => toolBegunRateChanged(run(info), sendRate), callDuringReplay: true },
    },
  };
}
