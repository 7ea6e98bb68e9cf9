/** Who did what, read from Temporal itself: workflow histories and pending activities (for tests of several workers). */
import os from 'node:os';
import type { Client } from '@temporalio/client';

/** The identity the SDK gives a worker process by default. */
export function processIdentity(pid: number | undefined): string {
  return `${pid}@${os.hostname()}`;
}

export interface ActivityRun {
  workflowId: string;
  activity: string;
  taskQueue: string;
  /** The worker that ran the attempt recorded in history (the last one). */
  identity: string;
  attempt: number;
  /** The previous attempt's failure, when this was a retry. */
  lastFailure?: string;
}

/** Every activity of a workflow's history: its type, queue, and the worker that ran its recorded attempt. */
export async function activityRuns(client: Client, workflowId: string): Promise<ActivityRun[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const scheduled = new Map<string, { activity: string; taskQueue: string }>();
  const runs: ActivityRun[] = [];
  for (const e of history.events ?? []) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), { activity: s.activityType?.name ?? '', taskQueue: s.taskQueue?.name ?? '' });
    const st = e.activityTaskStartedEventAttributes;
    if (st) {
      const of = scheduled.get(String(st.scheduledEventId)) ?? { activity: '?', taskQueue: '?' };
      runs.push({ workflowId, ...of, identity: st.identity ?? '', attempt: st.attempt ?? 1, lastFailure: st.lastFailure?.message ?? undefined });
    }
  }
  return runs;
}

/** The identities of the workers that completed a workflow's workflow tasks, and the queue it ran on. */
export async function workflowTaskWorkers(client: Client, workflowId: string): Promise<{ taskQueue: string; identities: Set<string> }> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const identities = new Set<string>();
  let taskQueue = '';
  for (const e of history.events ?? []) {
    const started = e.workflowExecutionStartedEventAttributes;
    if (started) taskQueue = started.taskQueue?.name ?? '';
    const done = e.workflowTaskCompletedEventAttributes;
    if (done?.identity) identities.add(done.identity);
  }
  return { taskQueue, identities };
}

export interface PendingActivity {
  workflowId: string;
  activity: string;
  identity: string;
  started: boolean;
}

/** The activities running or waiting now in these workflows (those not found yet are skipped). */
export async function pendingActivities(client: Client, workflowIds: string[]): Promise<PendingActivity[]> {
  const out: PendingActivity[] = [];
  for (const workflowId of workflowIds) {
    const d = await client.workflow
      .getHandle(workflowId)
      .describe()
      .catch(() => undefined);
    for (const p of d?.raw.pendingActivities ?? []) {
      out.push({
        workflowId,
        activity: p.activityType?.name ?? '',
        identity: p.lastWorkerIdentity ?? '',
        // PENDING_ACTIVITY_STATE_STARTED
        started: p.state === 2,
      });
    }
  }
  return out;
}

/** Resolves with the first truthy value `probe` returns, asking again after each answer (a state watch, not a timer). */
export async function watch<T>(probe: () => Promise<T | undefined | false>, pauseMs = 200): Promise<T> {
  for (;;) {
    const v = await probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}
