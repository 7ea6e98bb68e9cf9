/**
 * One durable workflow per session (backup, restore or incremental). It keeps
 * the queue of appended bundles, runs one child workflow per bundle (at most
 * `maxConcurrentBundles` at once, by priority then append order), numbers the
 * events children and activities report, and serves them to the tool, which
 * acknowledges what it has delivered. `release` completes it. The rules live
 * in SessionState (state.ts); this file wires them to Temporal.
 */
import {
  type ActivityOptions,
  ApplicationFailure,
  CancellationScope,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  proxySinks,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import {
  ackSignal,
  appendBundlesUpdate,
  bundleEventsSignal,
  cancelBundleUpdate,
  deliveryStoppedSignal,
  eventsQuery,
  getBackupDataSizeUpdate,
  getFileHandleUpdate,
  getFileHandlesUpdate,
  MAX_FILE_HANDLES_PER_UPDATE,
  outcomesQuery,
  publishFileUpdate,
  publishSignal,
  releaseUpdate,
  type FileMetaInput,
  type SessionStart,
  type SessionWorkflow,
} from '../../common/messages.js';
import type { createActivities } from '../../activities/index.js';
import { CONTINUING_TYPE, ErrorCode, FAILURE_TYPE, errorInfo, type ErrorInfo } from '../../common/errors.js';
import { DEFAULTS, bundleWorkflowId, type SessionKind, type SessionOutcome, type SessionResult } from '../../common/session.js';
import type { OhbackupSinks } from '../../common/metrics.js';
import { deviceLabel } from '../../common/deviceLabel.js';
import { codedFailure, codedInfo, sessionOutcome } from '../../common/rules.js';
import { searchableBundles } from '../../common/searchAttributes.js';
import { bundleBackupWorkflow } from '../bundle/backup.js';
import { bundleRestoreWorkflow } from '../bundle/restore.js';
import { claimSessionBundles, releaseSessionBundles } from './claims.js';
import { ToolLease, type LeaseState } from './lease.js';
import { SessionState, deviceBundleOf, type AppendedBundle, type BundleSlot, type CarriedState } from './state.js';

export interface SessionInput extends SessionStart {
  /** Set only by continue-as-new. */
  carried?: CarriedState;
  /** Set only by continue-as-new: when the tool was last heard from. */
  lease?: LeaseState;
}

// Quick, small activities: a short limit, so one lost with a killed worker is retried on a live one within seconds.
const quickActivityOptions: ActivityOptions = {
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '200 ms', nonRetryableErrorTypes: [FAILURE_TYPE] },
};

/**
 * From this patch on, a backup append's bundle checks run as a local activity (when the session's worker is the
 * device's): inside the workflow task that takes the append, so the children start in the claim's completion
 * instead of after a second activity and its task. Histories from before it replay their regular activity. The
 * claim stays a regular activity (workflows/session/claims.ts says why).
 */
const LOCAL_APPEND_CHECKS = 'local-append-checks';

const scanActivityOptions: ActivityOptions = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumAttempts: 3 },
};

/** How long, and how many events past the suggestion, a continue-as-new waits at most for the session to quiet down. */
const CAN_DRAIN_EVENTS = 1000;
const CAN_DRAIN_MS = 10_000;

export async function sessionWorkflow(input: SessionInput): Promise<SessionResult> {
  const maxConcurrent = input.maxConcurrentBundles ?? DEFAULTS.maxConcurrentBundles;
  // Every activity here touches the device's files: on a named device's own queue when there is one (undefined: the session's queue).
  const deviceActivities = proxyActivities<ReturnType<typeof createActivities>>({ ...quickActivityOptions, taskQueue: input.deviceTaskQueue });
  // The session worker's own device only: a named device's files are read on that device's queue.
  const localDeviceActivities = proxyLocalActivities<ReturnType<typeof createActivities>>(quickActivityOptions);
  const scanActivities = proxyActivities<ReturnType<typeof createActivities>>({ ...scanActivityOptions, taskQueue: input.deviceTaskQueue });
  const session = new SessionState(input.kind, input.carried);
  const lease = new ToolLease(input.toolTimeoutMs ?? DEFAULTS.toolTimeoutMs, Date.now(), input.lease);
  const child = (bundleName: string) => getExternalWorkflowHandle(bundleWorkflowId(input.sessionId, bundleName));
  let sizeScansRunning = 0;
  /** Children this run started that have not closed yet (their close is an event of this run). */
  const openChildren = new Set<string>();
  /** Set once continue-as-new was suggested: the history length up to which the run waits for it to quiet down. */
  let drainUntil: number | undefined;

  const device = deviceLabel(input.deviceTaskQueue ?? workflowInfo().taskQueue);
  // The chain's start, so a session that continued as new is timed from its first run.
  const sessionStartedAt = workflowInfo().startTime.getTime();
  const metrics = sessionMetrics(input.kind, device);
  session.onEnded = (slot) => metrics.bundleEnded(slot);
  // Once per session, not again after continue-as-new.
  if (!input.carried) log.info('session started', { kind: input.kind, device, ...(input.origin ?? {}) });

  // Search attributes let people find sessions by kind, bundle, state, outcome and device in the UI and with `ohbackup sessions`.
  // A function declaration: handlers that run in the very first activation may call it.
  function markSearch(state?: string, outcome?: SessionOutcome): void {
    if (!input.searchAttributes) return;
    upsertSearchAttributes({
      OhbackupBundles: searchableBundles(session.slots.map((b) => b.bundleName)),
      ...(state ? { OhbackupState: [state] } : {}),
      ...(outcome ? { OhbackupOutcome: [outcome] } : {}),
    });
  }
  // Costs no history: the UI's current details follow the bundles as they go.
  const showDetails = () => setCurrentDetails(session.details());

  setHandler(
    appendBundlesUpdate,
    async ({ bundles }) => {
      const callNo = session.countAppend();
      const local = patched(LOCAL_APPEND_CHECKS);
      // 13500013: a bundle another running session holds on this device begins and ends with that error; the rest run.
      const [checked, held] = await Promise.all([
        checkAppended(bundles, local && !input.deviceTaskQueue),
        claimSessionBundles(session.toClaim(bundles), callNo, input.deviceTaskQueue),
      ]);
      session.add(checked, held);
      markSearch();
    },
    { validator: (_request) => session.checkAppend() },
  );
  /**
   * Backup: checks the new bundles of an append in one activity (a bundle that cannot run begins and ends with why
   * when its turn comes), so their children begin at once and the session reports their begin itself: no signal
   * and no local activity per bundle. Restore checks (and installs) in each child, under its deadline.
   */
  async function checkAppended(bundles: AppendedBundle[], local: boolean): Promise<AppendedBundle[]> {
    const names = input.kind === 'restore' ? [] : session.toClaim(bundles);
    if (names.length === 0) return bundles;
    const answers = await (local ? localDeviceActivities : deviceActivities).prepareBundles({ bundleNames: names, kind: input.kind });
    const byName = new Map(names.map((name, i) => [name, answers[i]!]));
    return bundles.map((b) => {
      const answer = byName.get(deviceBundleOf(b));
      if (!answer || b.rejected) return b;
      return answer.ok ? { ...b, hooks: answer.hooks } : { ...b, rejected: answer.error };
    });
  }
  // A client that sends no request (an older tool) is the session's own tool.
  setHandler(releaseUpdate, (req) => session.release(req?.by ?? 'tool'), { validator: (_req) => session.checkRelease() });
  setHandler(cancelBundleUpdate, async (bundleName) => {
    const refusal = session.cancelRefusal(bundleName);
    if (refusal !== undefined) return refusal;
    await child(bundleName).cancel();
    return 0;
  });
  /**
   * Temporal refuses a run more than `history.maxTotalUpdates` updates (2 000; continue-as-new is suggested at 90%),
   * and a restore takes up to two per handed file (the tool library gathers its getFileHandle calls into getFileHandles
   * updates, and publishes a bundle once): while this run drains for its continue-as-new, file updates are refused
   * (a refusal is not recorded, so it does not count) and the tool asks the next run. Taking them on would also keep
   * the drain from ending: a restore child closes only after its bundle is published.
   */
  function refuseWhileContinuing(): void {
    if (drainUntil !== undefined && !session.released)
      throw ApplicationFailure.create({ type: CONTINUING_TYPE, message: 'the session is continuing as new: ask again', nonRetryable: false });
  }
  /** A file's target, asked for at once (marked asked before the caller's next check), made on the device. */
  async function makeTarget(meta: FileMetaInput): Promise<void> {
    const slot = session.requestTarget(meta);
    const target = await deviceActivities.createRestoreTarget({ sessionId: input.sessionId, bundleName: deviceBundleOf(slot.request), uri: meta.uri });
    session.targetMade(slot, meta.uri, target);
  }
  // One file per update: what tools before getFileHandles send, and what sessions running since then replay.
  setHandler(getFileHandleUpdate, (meta) => makeTarget(meta), {
    validator: (meta) => {
      refuseWhileContinuing();
      session.checkTargetRequest(meta);
    },
  });
  setHandler(
    getFileHandlesUpdate,
    (metas) =>
      // Each file is checked and marked asked before the next one's check (a uri twice in one batch is refused once).
      Promise.all(
        metas.map(async (meta) => {
          try {
            session.checkTargetRequest(meta);
          } catch (err) {
            return refusalInfo(err);
          }
          // A target that could not be made fails its own file, as its own update would have, not the batch.
          return makeTarget(meta).then(() => null, targetFailureInfo);
        }),
      ),
    {
      validator: (metas) => {
        refuseWhileContinuing();
        if (!Array.isArray(metas) || metas.length === 0 || metas.length > MAX_FILE_HANDLES_PER_UPDATE)
          throw codedFailure(ErrorCode.INVALID_ARGUMENT, `getFileHandles takes 1 to ${MAX_FILE_HANDLES_PER_UPDATE} files`);
      },
    },
  );
  setHandler(
    publishFileUpdate,
    async (meta) => {
      if (session.publish(meta)) await child(meta.bundleName).signal(publishSignal);
    },
    {
      validator: (meta) => {
        refuseWhileContinuing();
        session.checkPublish(meta);
      },
    },
  );
  setHandler(
    getBackupDataSizeUpdate,
    (req) => {
      // The scan runs on while the session goes on; its reports come through bundleEvents.
      sizeScansRunning += 1;
      void scanActivities
        .scanBackupSize({ sessionWorkflowId: workflowInfo().workflowId, precise: req.precise, dataList: req.dataList })
        .catch(() => undefined)
        .finally(() => (sizeScansRunning -= 1));
    },
    { validator: (_request) => session.checkSizeScan() },
  );
  // Every acknowledgement, also a repeated one (the tool's idle heartbeat), renews the tool lease.
  setHandler(ackSignal, (seq) => {
    lease.seen(Date.now());
    session.ack(seq);
  });
  setHandler(deliveryStoppedSignal, (stop) => {
    if (session.deliveryStopped(stop))
      void child(stop.bundleName)
        .cancel()
        .catch(() => undefined);
  });
  setHandler(bundleEventsSignal, (bodies) => {
    for (const body of bodies) session.accept(body);
    showDetails();
  });
  // A continue-as-new waiting only for the tool's acknowledgement asks for it (the tool otherwise acknowledges lazily).
  setHandler(eventsQuery, (after, max) => ({
    ...session.eventsPage(after, max),
    toolTimeoutMs: lease.timeoutMs,
    toolSeenAt: lease.lastSeen,
    ...(drainUntil !== undefined && !childrenBusy() && !session.log.allAcked() ? { ackNow: true } : {}),
  }));
  setHandler(outcomesQuery, () => session.outcomes());

  /** Starts the child of a slot already marked running. */
  async function startBundle(slot: BundleSlot): Promise<void> {
    if (slot.request.rejected) return session.endRejected(slot, slot.request.rejected);
    const publishedAtStart = slot.published;
    const target = slot.request.targetBundle && slot.request.targetBundle !== slot.bundleName ? ` into ${slot.request.targetBundle}` : '';
    const handle = await startChild(input.kind === 'restore' ? bundleRestoreWorkflow : bundleBackupWorkflow, {
      workflowId: bundleWorkflowId(input.sessionId, slot.bundleName),
      args: [
        {
          sessionId: input.sessionId,
          sessionWorkflowId: workflowInfo().workflowId,
          kind: input.kind,
          request: slot.request,
          published: publishedAtStart,
          ...(input.sendRate !== undefined ? { sendRate: input.sendRate } : {}),
        },
      ],
      // The session may continue-as-new while children run; it stops them itself on release.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      taskQueue: input.deviceTaskQueue,
      staticSummary: `${input.kind} of ${slot.bundleName}${target}`,
    });
    slot.childStarted = true;
    openChildren.add(slot.bundleName);
    // Checked when appended: it begins now, in this workflow task (the child then reports only files, result and end).
    if (slot.request.hooks) session.accept({ type: 'bundleBegin', bundleName: slot.bundleName });
    // A failed or cancelled child has reported its end before it closed: its failure is no news here (and must not
    // reject unobserved). Only a child ended from outside without reporting (terminated) ends its bundle now.
    void handle
      .result()
      .catch((err: unknown) => {
        const detail = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
        session.childClosed(slot.bundleName, errorInfo(ErrorCode.EXTENSION_DIED, `its workflow ended without reporting its end (${detail})`));
        showDetails();
      })
      .finally(() => openChildren.delete(slot.bundleName));
    // Published while the child was being started: tell it now.
    if (slot.published && !publishedAtStart) await child(slot.bundleName).signal(publishSignal);
  }

  // The tool lease's timer: one at a time, kept across the loop's wakes (a timer per wake would cost two events
  // each) and re-armed from the last acknowledgement only when it fires.
  let leaseDue = false;
  const armLease = () =>
    void sleep(lease.remainingMs(Date.now())).then(
      () => (leaseDue = true),
      () => undefined, // cancelled with the session: its release follows
    );
  armLease();
  // Continue-as-new, once suggested, waits (no new bundle starts) until this run's children have closed and the
  // tool has acknowledged every event: a signal or child close that lands during the continue-as-new fails its
  // workflow task (unhandled command), and the retry replays the whole history while the tool's queries wait.
  // Bounded: a long or paused bundle, or a silent tool, holds it (and the bundles waiting to start) at most
  // CAN_DRAIN_MS (one timer per continue-as-new) or CAN_DRAIN_EVENTS more events.
  let drainTimedOut = false;
  // A restore child that has begun and waits for its bundle's publish (refused meanwhile) sends nothing: it holds nothing up.
  const childrenBusy = () => [...openChildren].some((name) => !(input.kind === 'restore' && session.waitsForPublish(name)));
  const drained = () => (!childrenBusy() && session.log.allAcked()) || drainTimedOut || workflowInfo().historyLength >= drainUntil!;
  try {
    for (;;) {
      showDetails();
      await condition(
        () =>
          session.released ||
          leaseDue ||
          session.allEndDue() ||
          (drainUntil === undefined ? session.canStart(maxConcurrent) || workflowInfo().continueAsNewSuggested : drained()),
      );
      if (leaseDue) {
        leaseDue = false;
        if (!session.released && lease.expired(Date.now())) session.abandon(lease.silence(Date.now()), new Date().toISOString());
        else armLease();
      }
      if (session.released) break;
      if (drainUntil === undefined) await Promise.all(session.takeStartable(maxConcurrent).map(startBundle));
      session.announceAllEnded();
      if (workflowInfo().continueAsNewSuggested && !session.released) {
        if (drainUntil === undefined) {
          drainUntil = workflowInfo().historyLength + CAN_DRAIN_EVENTS;
          if (!drained())
            void sleep(CAN_DRAIN_MS).then(
              () => (drainTimedOut = true),
              () => undefined, // cancelled with the session: its release follows
            );
        }
        if (!drained()) continue;
        await condition(() => allHandlersFinished() && sizeScansRunning === 0);
        // Released meanwhile: end here instead.
        if (!session.released) return continueAsNew<typeof sessionWorkflow>({ ...input, carried: session.toCarried(), lease: lease.toCarried() });
      }
    }
  } catch (err) {
    // The UI's "Request Cancellation" of the session: a release by another client, which still ends every bundle.
    if (!isCancellation(err)) throw err;
    session.release('another client');
  }
  return CancellationScope.nonCancellable(releaseSession);

  /** Release: stop what runs, report what never started, clean the session's temp data, free its claims. */
  async function releaseSession(): Promise<SessionResult> {
    showDetails();
    for (const slot of session.slots) {
      if (slot.state === 'running')
        await child(slot.bundleName)
          .cancel()
          .catch(() => undefined);
    }
    await condition(() => session.running().length === 0, '2 minutes');
    session.markNotStarted();
    session.announceAllEnded();
    const abandoned = session.settleAbandoned();
    // Its bundles are free for other sessions on the device (13500013) while its own temp data goes: another
    // session packs and restores in folders of its own (packDir, restoreDir are per session), so one round trip, not two.
    await Promise.all([
      deviceActivities.cleanSessionTemp({ sessionId: input.sessionId, bundleNames: session.slots.map((b) => deviceBundleOf(b.request)) }),
      session.slots.some((b) => !b.request.rejected) ? releaseSessionBundles(input.deviceTaskQueue) : undefined,
    ]);
    await condition(allHandlersFinished);
    const outcome: SessionOutcome = abandoned ? 'abandoned' : sessionOutcome(session.slots);
    markSearch(abandoned ? 'abandoned' : 'released', outcome);
    showDetails();
    // The UI shows the session's result (and memo) once it has closed, when no worker answers for its current details any more.
    const summaryMarkdown = session.summaryMarkdown(outcome, input.origin);
    upsertMemo({ summary: summaryMarkdown });
    metrics.sessionEnded(outcome, Date.now() - sessionStartedAt);
    const files = session.slots.reduce((n, b) => n + b.files, 0);
    const bytes = session.slots.reduce((n, b) => n + b.bytes, 0);
    log.info('session ended', { kind: input.kind, device, outcome, bundles: session.slots.length, files, bytes, endedBy: session.endedBy });
    return {
      sessionId: input.sessionId,
      kind: input.kind,
      outcome,
      bundles: session.outcomes(),
      summaryMarkdown,
      trailingEvents: session.log.unacked(),
      endedBy: session.endedBy,
      ...(abandoned ? { abandoned } : {}),
    };
  }
}

/** A file of a getFileHandles batch the session refuses (a coded failure, as its own update would have thrown): its answer. */
function refusalInfo(err: unknown): ErrorInfo {
  const info = codedInfo(err);
  if (!info) throw err;
  return info;
}

/** A file of a getFileHandles batch whose target failed: the code its failure carries (the tool's reading of a failed update), else 13900042. */
function targetFailureInfo(err: unknown): ErrorInfo {
  return codedInfo(err) ?? errorInfo(ErrorCode.UNKNOWN, err instanceof Error ? err.message : String(err));
}

/**
 * The metrics and log lines of bundle and session ends (docs/operating.md
 * "Metrics"). Emitted where a bundle's end is accepted, so bundles refused
 * before a child started (e.g. 13500013) count too; through the sink, so not
 * again on replay (the workflow logger, too, is silent on replay).
 */
function sessionMetrics(kind: SessionKind, device: string) {
  const { ohbackupMetrics } = proxySinks<OhbackupSinks>();
  return {
    bundleEnded(slot: BundleSlot): void {
      const endedAt = slot.endedAt ?? Date.now();
      const seconds = slot.startedAt !== undefined ? (endedAt - slot.startedAt) / 1000 : 0;
      const { bundleName, state: outcome, files, bytes } = slot;
      ohbackupMetrics.bundleEnded({ kind, device, bundleName, outcome, errorCode: slot.error?.code, files, bytes, seconds, endedAt });
      log.info('bundle ended', {
        bundleName,
        kind,
        device,
        outcome,
        files,
        bytes,
        durationMs: Math.round(seconds * 1000),
        ...(slot.error ? { errorCode: slot.error.code, error: slot.error.message } : {}),
      });
    },
    sessionEnded(outcome: SessionOutcome, ms: number): void {
      ohbackupMetrics.sessionEnded({ kind, device, outcome, seconds: ms / 1000 });
    },
  };
}
// The tool starts it by name with this signature (common/messages.ts); this keeps the two the same.
void (sessionWorkflow satisfies SessionWorkflow);
