/**
 * Device-side runs from the operator's side (common/deviceRun.ts): start
 * `deviceRunWorkflow` on the device's task queue, follow it through its
 * activity's heartbeats, cancel it, list the device workers. Nothing here
 * touches a repository or the device's files: the request names the
 * repository by the device's own alias, and the device's worker does the rest.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, CancelledFailure, TerminatedFailure, defaultPayloadConverter } from '@temporalio/common';
import {
  DEVICE_RECORD_MEMO,
  DEVICE_RECORD_WORKFLOW,
  DEVICE_RUN_FAILED,
  DEVICE_RUN_SETUP,
  DEVICE_RUN_WORKFLOW,
  type DeviceRecord,
  type DeviceRunProgress,
  type DeviceRunRequest,
  type DeviceRunResult,
  type DeviceQueryKind,
} from '../../common/deviceRun.js';
import { deviceTaskQueue } from '../../common/deviceQueue.js';
import type { DeviceRunWorkflow } from '../../common/messages.js';
import type { RunOutcome } from '../../common/rules.js';
import type { BundleOutcome } from '../../common/session.js';
import { OhbackupDevice, OhbackupKind } from '../../common/searchAttributes.js';
import { SetupError, connect, sessionUiUrl } from './setup.js';

export interface StartedDeviceRun {
  workflowId: string;
  uiUrl: string;
  device: string;
  /** No worker polls the device's queue now: the run waits for one. */
  waitingForWorker: boolean;
}

export interface FollowedDeviceRun extends Omit<DeviceRunResult, 'outcome'> {
  workflowId: string;
  uiUrl: string;
  outcome: RunOutcome;
}

/** Whether some worker polls the device's queue now (the service forgets pollers silent for about a minute or more). */
export async function deviceWorkerLive(client: Client, device: string): Promise<{ live: boolean; lastSeen?: string; identities: string[] }> {
  const res = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: deviceTaskQueue(device), kind: 1 /* NORMAL */ },
    taskQueueType: 2 /* ACTIVITY */,
  });
  const pollers = res.pollers ?? [];
  const times = pollers.map((p) => Number(p.lastAccessTime?.seconds ?? 0) * 1000).filter((t) => t > 0);
  const last = times.length ? new Date(Math.max(...times)).toISOString() : undefined;
  return { live: pollers.length > 0, ...(last ? { lastSeen: last } : {}), identities: pollers.map((p) => p.identity ?? '').filter(Boolean) };
}

function searchAttributesOn(): boolean {
  return process.env.OHBACKUP_SEARCH_ATTRIBUTES !== 'off';
}

/** Starts the run on the device's queue; it waits there for the device's worker if none polls now. */
export async function startDeviceRun(request: DeviceRunRequest, client?: Client): Promise<StartedDeviceRun> {
  const c = client ?? (await connect());
  const workflowId = `ohbackup-device-${request.kind}-${request.device}-${randomUUID()}`;
  const { live } = await deviceWorkerLive(c, request.device);
  await c.workflow.start<DeviceRunWorkflow>(DEVICE_RUN_WORKFLOW, {
    workflowId,
    taskQueue: deviceTaskQueue(request.device),
    args: [request],
    staticSummary: `ohbackup ${request.kind} on device ${request.device}, repository "${request.repository}"`,
    staticDetails:
      `Run by the worker of device ${request.device} (task queue \`${deviceTaskQueue(request.device)}\`), ` +
      `with the repository its worker names "${request.repository}". Progress is the activity's heartbeat; the result names the session and snapshot.`,
    ...(searchAttributesOn()
      ? {
          typedSearchAttributes: [
            { key: OhbackupDevice, value: request.device },
            { key: OhbackupKind, value: `device-${request.kind}` },
          ],
        }
      : {}),
  });
  return { workflowId, uiUrl: sessionUiUrl(c.options.namespace, workflowId), device: request.device, waitingForWorker: !live };
}

export interface FollowOptions {
  client?: Client;
  onProgress?: (p: DeviceRunProgress) => void;
  /** Something to say (waiting for the device's worker, a retry after a worker was lost). */
  onNotice?: (message: string) => void;
  /** Aborting cancels the run: its session is released on the device, then the run ends interrupted. */
  signal?: AbortSignal;
  pollMs?: number;
}

function decode<T>(payloads: { payloads?: unknown[] | null } | null | undefined): T | undefined {
  const first = payloads?.payloads?.[0];
  return first ? (defaultPayloadConverter.fromPayload(first as never) as T) : undefined;
}

/** Follows a run to its end (also one started elsewhere: `ohbackup follow ID`) and returns its result. */
export async function followDeviceRun(workflowId: string, opts: FollowOptions = {}): Promise<FollowedDeviceRun> {
  const client = opts.client ?? (await connect());
  const handle = client.workflow.getHandle<DeviceRunWorkflow>(workflowId);
  const uiUrl = sessionUiUrl(client.options.namespace, workflowId);
  try {
    const d = await handle.describe();
    if (d.type !== DEVICE_RUN_WORKFLOW) throw new SetupError(`${workflowId} is not a device run (it is a ${d.type}).`, 'usage');
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new SetupError(`There is no run ${workflowId} in namespace ${client.options.namespace}.`, 'failed');
    throw err;
  }
  const request = await runRequest(handle);
  let settled = false;
  const result = handle.result().finally(() => (settled = true));
  result.catch(() => undefined);
  let cancelled = false;
  const cancel = () => {
    if (cancelled) return;
    cancelled = true;
    void (async () => {
      // No worker of the device to hear a cancellation (the run never started there): end the run outright.
      const live = await deviceWorkerLive(client, request.device).catch(() => undefined);
      if (live && !live.live) {
        opts.onNotice?.(`Cancelling the run: no worker of device ${request.device} is there to run it; it ends now.`);
        await handle.terminate(`cancelled before a worker of device ${request.device} ran it`);
      } else {
        opts.onNotice?.('Cancelling the run: the device releases its session ...');
        await handle.cancel();
      }
    })().catch(() => undefined);
  };
  if (opts.signal?.aborted) cancel();
  opts.signal?.addEventListener('abort', cancel, { once: true });
  let last: DeviceRunProgress | undefined;
  let lastText = '';
  let said = '';
  const say = (m: string) => {
    if (m !== said) opts.onNotice?.((said = m));
  };
  try {
    while (!settled) {
      const raw = (await handle.describe().catch(() => undefined))?.raw;
      const pending = raw?.pendingActivities?.[0];
      const details = pending ? decode<DeviceRunProgress>(pending.heartbeatDetails) : undefined;
      const text = JSON.stringify(details ?? null);
      if (details && text !== lastText) {
        lastText = text;
        last = details;
        opts.onProgress?.(details);
      }
      if (pending && (pending.attempt ?? 1) > 1 && pending.lastFailure?.message)
        say(`Attempt ${pending.attempt} of the run on device ${request.device} (the one before: ${pending.lastFailure.message}).`);
      // Not started on the device (no activity yet, or one scheduled and not picked up): say whether a worker is there to pick it up.
      if (!pending || pending.state === 1 /* SCHEDULED */) {
        const live = await deviceWorkerLive(client, request.device).catch(() => undefined);
        if (live && !live.live)
          say(
            `Waiting for the worker of device ${request.device}: none polls its task queue now (start \`ohbackup worker --device ${request.device}\` there).`,
          );
      }
      await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, opts.pollMs ?? 500))]);
    }
    return { ...(await result), workflowId, uiUrl };
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    const cause = err.cause;
    if (cause instanceof CancelledFailure || cancelled) {
      const bundles = (last?.bundles ?? []).map(
        (b) => ({ bundleName: b.name, state: b.state === 'running' ? 'cancelled' : b.state, files: b.files, bytes: b.bytes }) as BundleOutcome,
      );
      const progress = { bundles, files: last?.files ?? 0, bytes: last?.bytes ?? 0, ...(last?.sessionId ? { sessionId: last.sessionId } : {}) };
      return { kind: request.kind, device: request.device, repository: request.repository, attempt: 0, ...progress, workflowId, uiUrl, outcome: 'interrupted' };
    }
    if (cause instanceof ApplicationFailure && cause.type === DEVICE_RUN_FAILED)
      return { ...(cause.details?.[0] as DeviceRunResult), workflowId, uiUrl, outcome: 'failed' };
    const inner = cause instanceof ActivityFailure ? cause.cause : cause;
    if (inner instanceof ApplicationFailure && inner.type === DEVICE_RUN_SETUP) throw new SetupError(inner.message, 'failed');
    if (cause instanceof TerminatedFailure) throw new SetupError(`The run ${workflowId} was terminated: ${cause.message}`, 'failed');
    throw new SetupError(`The run ${workflowId} failed: ${inner?.message ?? err.message}`, 'failed');
  } finally {
    opts.signal?.removeEventListener('abort', cancel);
  }
}

/** The request a run was started with (the first event of its history: a handful of events in all). */
async function runRequest(handle: ReturnType<Client['workflow']['getHandle']>): Promise<DeviceRunRequest> {
  const history = await handle.fetchHistory();
  const input = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input;
  const request = decode<DeviceRunRequest>(input);
  if (!request?.device) throw new SetupError(`${handle.workflowId} has no device run request.`, 'failed');
  return request;
}

/**
 * A repository command answered by a device's worker (`snapshots`, `check`,
 * `forget`, `diff` with `--on-device`): the run's answer, the repository
 * library's own result as the device got it.
 */
export async function deviceQuery(
  request: DeviceRunRequest & { kind: DeviceQueryKind },
  opts: { client?: Client; signal?: AbortSignal; onNotice?: (m: string) => void } = {},
): Promise<unknown> {
  const client = opts.client ?? (await connect());
  const started = await startDeviceRun(request, client);
  const r = await followDeviceRun(started.workflowId, { client, signal: opts.signal, onNotice: opts.onNotice });
  if (r.outcome === 'interrupted' || r.answer === undefined) throw new SetupError(`Interrupted: the ${request.kind} did not finish.`, 'interrupted');
  return r.answer;
}

export interface DeviceView extends Partial<DeviceRecord> {
  device: string;
  taskQueue: string;
  /** Some worker polls the device's queue now. */
  live: boolean;
  /** When a poller was last seen (live workers), else the record's start time. */
  lastSeen?: string;
}

/** The device workers that have announced themselves on this namespace, with whether one polls now. */
export async function listDevices(client?: Client): Promise<DeviceView[]> {
  const c = client ?? (await connect());
  const out: DeviceView[] = [];
  for await (const w of c.workflow.list({ query: `WorkflowType = '${DEVICE_RECORD_WORKFLOW}' AND ExecutionStatus = 'Running'` })) {
    const record = w.memo?.[DEVICE_RECORD_MEMO] as DeviceRecord | undefined;
    if (!record?.device) continue;
    const live = await deviceWorkerLive(c, record.device);
    out.push({ ...record, live: live.live, lastSeen: live.lastSeen ?? record.startedAt });
  }
  return out.sort((a, b) => a.device.localeCompare(b.device));
}
