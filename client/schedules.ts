/**
 * Scheduled backups on Temporal Schedules: each schedule's action starts a
 * `scheduledBackupWorkflow` on the device's task queue, which writes a new
 * backup set into the destination (see activities/scheduledBackup.ts).
 * Overlapping runs are skipped. These functions do no printing; the
 * `ohbackup schedule` commands print what they return.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  ServiceError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type Client,
  type ScheduleDescription,
  type ScheduleExecutionResult,
  type ScheduleSpec,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  SCHEDULED_BACKUP_FAILED,
  SCHEDULED_BACKUP_WORKFLOW,
  SCHEDULE_MEMO_KEY,
  type ScheduleMemo,
  type ScheduledBackupRequest,
  type ScheduledBackupSummary,
} from '../common/scheduledBackup.js';
import type { ScheduledBackupWorkflow } from '../common/messages.js';
import { getClient, taskQueue as defaultTaskQueue } from './connection.js';
import { uiBaseUrl } from '../config/env.js';
import { DEFAULTS } from '../common/session.js';
import { travelProblem } from '../config/repository.js';
import { redactRepository } from '../engine/repository/errors.js';

/** Why a schedule operation was refused: `notFound` / `exists` (exit 1), `invalid` (wrong usage, exit 2). */
export class ScheduleError extends Error {
  constructor(
    readonly kind: 'notFound' | 'exists' | 'invalid',
    message: string,
  ) {
    super(message);
  }
}

export interface CreateScheduleOptions extends ScheduledBackupRequest {
  scheduleId: string;
  /** A cron expression (`0 2 * * *`); exactly one of `cron` and `every`. */
  cron?: string;
  /** An interval such as `24h`, `90m`, `1d12h` (see parseInterval). */
  every?: string;
  /** The time zone of `cron` (an IANA name); default UTC. */
  timezone?: string;
  /** The device's task queue; default the tool library's (OHBACKUP_TASK_QUEUE). */
  taskQueue?: string;
  /** Create it paused: only `trigger` starts runs until `unpause`. */
  paused?: boolean;
  note?: string;
}

/** One run a schedule started, and how it ended. */
export interface ScheduledRun {
  workflowId: string;
  runId: string;
  scheduledAt: string;
  takenAt: string;
  /** Temporal's status: RUNNING, COMPLETED, FAILED, TERMINATED, …; UNKNOWN once history is no longer retained. */
  status: string;
  uiUrl: string;
  /** Completed runs, and failed ones in which no bundle was backed up. */
  summary?: ScheduledBackupSummary;
  /** Why the run failed. */
  error?: string;
}

export interface ScheduleView {
  scheduleId: string;
  /** How its times were given: `cron 0 2 * * *` or `every 24h`. */
  when: string;
  timezone?: string;
  paused: boolean;
  note?: string;
  /** What each run does (absent for a schedule ohbackup did not make). */
  request?: ScheduledBackupRequest;
  taskQueue?: string;
  overlap: string;
  nextRuns: string[];
  /** Oldest first, as Temporal keeps them (the last 10). */
  recentRuns: ScheduledRun[];
  /** Workflow IDs of the runs in progress. */
  running: string[];
  actionsTaken: number;
  skippedOverlap: number;
  createdAt: string;
  uiUrl: string;
}

export interface ScheduleListing {
  scheduleId: string;
  when: string;
  paused: boolean;
  note?: string;
  request?: ScheduledBackupRequest;
  nextRun?: string;
  lastRun?: ScheduledRun;
}

export type TriggerResult = { scheduleId: string; skipped: false; run: ScheduledRun } | { scheduleId: string; skipped: true; reason: string };

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `24h`, `30m`, `1d12h`, `90s` → milliseconds (at least one second); undefined when not such an interval. */
export function parseInterval(text: string): number | undefined {
  const t = text.trim();
  if (!/^(\d+[smhd])+$/.test(t)) return undefined;
  let ms = 0;
  for (const [, n, unit] of t.matchAll(/(\d+)([smhd])/g)) ms += Number(n) * UNITS[unit!]!;
  return Number.isSafeInteger(ms) && ms >= 1000 ? ms : undefined;
}

function workflowUiUrl(namespace: string, workflowId: string): string {
  return `${uiBaseUrl()}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

function scheduleUiUrl(namespace: string, scheduleId: string): string {
  return `${uiBaseUrl()}/namespaces/${encodeURIComponent(namespace)}/schedules/${encodeURIComponent(scheduleId)}`;
}

/** Runs `fn`, turning the client's schedule errors into ScheduleErrors. */
async function guard<T>(scheduleId: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new ScheduleError('notFound', `no schedule "${scheduleId}" (see \`ohbackup schedule list\`)`);
    if (err instanceof ScheduleAlreadyRunning) {
      throw new ScheduleError(
        'exists',
        `a schedule "${scheduleId}" already exists (see \`ohbackup schedule describe ${scheduleId}\`; delete it first to replace it)`,
      );
    }
    // The service refuses a spec it cannot parse (a cron expression, a time zone): the client throws that as a TypeError.
    if (err instanceof TypeError) throw new ScheduleError('invalid', `the Temporal service refused the schedule's times: ${err.message}`);
    const grpc = err instanceof ServiceError ? (err.cause as { code?: number; details?: string } | undefined) : undefined;
    if (grpc?.code === 3) throw new ScheduleError('invalid', `the Temporal service refused the schedule: ${grpc.details ?? (err as Error).message}`);
    throw err;
  }
}

/** Creates the schedule; returns it as `describeSchedule` shows it. */
export async function createSchedule(opts: CreateScheduleOptions): Promise<ScheduleView> {
  if (!opts.scheduleId.trim()) throw new ScheduleError('invalid', 'a schedule needs an ID');
  if ((opts.cron === undefined) === (opts.every === undefined))
    throw new ScheduleError('invalid', 'give the times of the runs with exactly one of --cron and --every');
  let spec: ScheduleSpec;
  let when: string;
  if (opts.every !== undefined) {
    const ms = parseInterval(opts.every);
    if (ms === undefined) throw new ScheduleError('invalid', `--every "${opts.every}" is not an interval like 24h, 30m or 1d12h (at least 1s)`);
    spec = { intervals: [{ every: ms }] };
    when = `every ${opts.every.trim()}`;
  } else {
    spec = { cronExpressions: [opts.cron!.trim()], timezone: opts.timezone ?? 'UTC' };
    when = `cron ${opts.cron!.trim()}`;
  }
  if (opts.timezone !== undefined && opts.cron === undefined) throw new ScheduleError('invalid', '--timezone applies to --cron only');
  if ((opts.dest === undefined) === (opts.repository === undefined)) throw new ScheduleError('invalid', 'give exactly one of --dest and --repo');
  // The request travels through Temporal: a repository string with credentials may not (the worker's own alias is the way).
  const problem = opts.repository !== undefined ? travelProblem(opts.repository) : undefined;
  if (problem) throw new ScheduleError('invalid', `--repo ${redactRepository(opts.repository!)} cannot be sent to the worker: ${problem}`);
  if (opts.repository === undefined && (opts.keep || opts.fullEvery !== undefined))
    throw new ScheduleError('invalid', 'a keep policy and --full-every apply to a repository (--repo)');
  if (opts.fullEvery !== undefined && !opts.incremental) throw new ScheduleError('invalid', '--full-every applies to --incremental schedules');
  if (opts.bundleTimeoutMs !== undefined && (opts.bundleTimeoutMs < 0 || opts.bundleTimeoutMs > DEFAULTS.maxTimeoutMs))
    throw new ScheduleError('invalid', `--timeout must be at most ${DEFAULTS.maxTimeoutMs / 3_600_000}h`);
  const request: ScheduledBackupRequest = {
    ...(opts.dest !== undefined ? { dest: opts.dest } : {}),
    ...(opts.repository !== undefined ? { repository: opts.repository } : {}),
    incremental: Boolean(opts.incremental),
    ...(opts.bundles?.length ? { bundles: [...new Set(opts.bundles)] } : {}),
    ...(opts.rate !== undefined ? { rate: opts.rate } : {}),
    ...(opts.keep ? { keep: opts.keep } : {}),
    ...(opts.fullEvery !== undefined ? { fullEvery: opts.fullEvery } : {}),
    ...(opts.bundleTimeoutMs !== undefined ? { bundleTimeoutMs: opts.bundleTimeoutMs } : {}),
  };
  const memo: ScheduleMemo = { request, when };
  const client = await getClient();
  const queue = opts.taskQueue ?? defaultTaskQueue();
  await guard(opts.scheduleId, () =>
    client.schedule.create<ScheduledBackupWorkflow>({
      scheduleId: opts.scheduleId,
      spec,
      action: {
        type: 'startWorkflow',
        workflowType: SCHEDULED_BACKUP_WORKFLOW,
        // The service appends each run's time: ohbackup-scheduled-<id>-<time>.
        workflowId: `ohbackup-scheduled-${opts.scheduleId}`,
        taskQueue: queue,
        args: [request],
        staticSummary: `ohbackup scheduled ${request.incremental ? 'incremental ' : ''}backup into ${request.dest ?? `repository ${request.repository}`}`,
        staticDetails: `Schedule ${opts.scheduleId} (${when}): bundles ${request.bundles?.join(', ') ?? 'every backup-able bundle'}. The backup session is its own workflow, named in this run's details and result.`,
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
      memo: { [SCHEDULE_MEMO_KEY]: memo },
      state: { paused: Boolean(opts.paused), ...(opts.note ? { note: opts.note } : {}) },
    }),
  );
  return describeSchedule(opts.scheduleId);
}

/** The ohbackup schedules of the namespace (Temporal's listing is eventually consistent: a new one can take a moment to appear). */
export async function listSchedules(): Promise<ScheduleListing[]> {
  const client = await getClient();
  const out: ScheduleListing[] = [];
  for await (const s of client.schedule.list()) {
    if (s.action?.workflowType !== SCHEDULED_BACKUP_WORKFLOW) continue;
    const memo = s.memo?.[SCHEDULE_MEMO_KEY] as ScheduleMemo | undefined;
    const last = s.info.recentActions.at(-1);
    out.push({
      scheduleId: s.scheduleId,
      when: memo?.when ?? describeSpec(s.spec),
      paused: s.state.paused,
      ...(s.state.note ? { note: s.state.note } : {}),
      ...(memo?.request ? { request: memo.request } : {}),
      ...(s.info.nextActionTimes[0] ? { nextRun: s.info.nextActionTimes[0].toISOString() } : {}),
      ...(last ? { lastRun: await runOf(client, last) } : {}),
    });
  }
  return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

export async function describeSchedule(scheduleId: string): Promise<ScheduleView> {
  const client = await getClient();
  const d = await guard(scheduleId, () => client.schedule.getHandle(scheduleId).describe());
  return viewOf(client, d);
}

export async function pauseSchedule(scheduleId: string, note?: string): Promise<ScheduleView> {
  const client = await getClient();
  await guard(scheduleId, () => client.schedule.getHandle(scheduleId).pause(note ?? 'paused with ohbackup schedule pause'));
  return describeSchedule(scheduleId);
}

export async function unpauseSchedule(scheduleId: string, note?: string): Promise<ScheduleView> {
  const client = await getClient();
  await guard(scheduleId, () => client.schedule.getHandle(scheduleId).unpause(note ?? 'unpaused with ohbackup schedule unpause'));
  return describeSchedule(scheduleId);
}

/** Deletes the schedule. Runs already started go on; the sets in the destination are kept. */
export async function deleteSchedule(scheduleId: string): Promise<void> {
  const client = await getClient();
  await guard(scheduleId, () => client.schedule.getHandle(scheduleId).delete());
}

/** Past the second boundary, for clocks of server and client a little apart. */
const SECOND_MARGIN_MS = 150;

/**
 * Starts a run now (also when paused), under the schedule's overlap policy:
 * while a run is in progress the trigger is skipped. Returns the run it
 * started (found in the schedule's record of its actions) or why it was skipped.
 */
export async function triggerSchedule(scheduleId: string, waitMs = 60_000): Promise<TriggerResult> {
  const client = await getClient();
  const handle = client.schedule.getHandle(scheduleId);
  const before = await guard(scheduleId, () => handle.describe());
  const seen = new Set(before.info.recentActions.map((a) => a.action.workflow.workflowId));
  // A run's workflow ID ends in its start time to the second, and the server silently drops a start whose ID
  // is taken: a trigger in the same second as the last run would never run. Wait for the next second.
  const lastSecond = Math.max(0, ...before.info.recentActions.map((a) => Math.floor(a.scheduledAt.getTime() / 1000)));
  const sameSecondMs = (lastSecond + 1) * 1000 + SECOND_MARGIN_MS - Date.now();
  if (sameSecondMs > 0) await new Promise((r) => setTimeout(r, sameSecondMs));
  // The client's default for a trigger is ALLOW_ALL: name the schedule's own policy so a trigger is skipped like a due run.
  await guard(scheduleId, () => handle.trigger(before.policies.overlap ?? ScheduleOverlapPolicy.SKIP));
  // The schedule records the trigger asynchronously: look until it counts a new action or a skip.
  const deadline = Date.now() + waitMs;
  for (;;) {
    const d = await guard(scheduleId, () => handle.describe());
    const taken = d.info.recentActions.find((a) => !seen.has(a.action.workflow.workflowId));
    if (taken) return { scheduleId, skipped: false, run: await runOf(client, taken) };
    if (d.info.numActionsSkippedOverlap > before.info.numActionsSkippedOverlap) {
      return { scheduleId, skipped: true, reason: 'a run of this schedule is still in progress (overlap policy SKIP)' };
    }
    if (Date.now() > deadline) throw new Error(`schedule "${scheduleId}" was triggered but recorded no run within ${waitMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits for a run to end; returns it with its result. */
export async function waitForRun(run: Pick<ScheduledRun, 'workflowId' | 'runId' | 'scheduledAt' | 'takenAt'>): Promise<ScheduledRun> {
  const client = await getClient();
  await client.workflow
    .getHandle(run.workflowId, run.runId)
    .result()
    .catch(() => undefined); // runOf reads how it ended
  return runOf(client, {
    scheduledAt: new Date(run.scheduledAt),
    takenAt: new Date(run.takenAt),
    action: { type: 'startWorkflow', workflow: { workflowId: run.workflowId, firstExecutionRunId: run.runId } },
  });
}

async function viewOf(client: Client, d: ScheduleDescription): Promise<ScheduleView> {
  const memo = d.memo?.[SCHEDULE_MEMO_KEY] as ScheduleMemo | undefined;
  const request = (d.action.args?.[0] as ScheduledBackupRequest | undefined) ?? memo?.request;
  const namespace = client.options.namespace;
  return {
    scheduleId: d.scheduleId,
    when: memo?.when ?? describeSpec(d.spec),
    ...(d.spec.timezone ? { timezone: d.spec.timezone } : {}),
    paused: d.state.paused,
    ...(d.state.note ? { note: d.state.note } : {}),
    ...(request ? { request } : {}),
    ...(d.action.taskQueue ? { taskQueue: d.action.taskQueue } : {}),
    overlap: String(d.policies.overlap),
    nextRuns: d.info.nextActionTimes.map((t) => t.toISOString()),
    recentRuns: await Promise.all(d.info.recentActions.map((a) => runOf(client, a))),
    running: d.info.runningActions.map((a) => a.workflow.workflowId),
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
    createdAt: d.info.createdAt.toISOString(),
    uiUrl: scheduleUiUrl(namespace, d.scheduleId),
  };
}

/** A run with its status, and its summary or failure once it has ended. */
async function runOf(client: Client, a: ScheduleExecutionResult): Promise<ScheduledRun> {
  const { workflowId, firstExecutionRunId: runId } = a.action.workflow;
  const run: ScheduledRun = {
    workflowId,
    runId,
    scheduledAt: a.scheduledAt.toISOString(),
    takenAt: a.takenAt.toISOString(),
    status: 'UNKNOWN',
    uiUrl: workflowUiUrl(client.options.namespace, workflowId),
  };
  const handle = client.workflow.getHandle(workflowId, runId);
  try {
    run.status = (await handle.describe()).status.name;
    if (run.status === 'RUNNING') return run;
    run.summary = (await handle.result()) as ScheduledBackupSummary;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return run; // past the namespace's retention
    if (!(err instanceof WorkflowFailedError)) throw err;
    const cause = err.cause;
    run.error = cause?.message ?? err.message;
    if (cause instanceof ApplicationFailure && cause.type === SCHEDULED_BACKUP_FAILED) run.summary = cause.details?.[0] as ScheduledBackupSummary;
  }
  return run;
}

/** The times of a schedule ohbackup did not describe in its memo. */
function describeSpec(spec: ScheduleDescription['spec'] | undefined): string {
  if (spec?.intervals?.length) return spec.intervals.map((i) => `every ${i.every / 1000}s`).join(', ');
  if (spec?.calendars?.length) return 'calendar';
  return 'manual';
}
