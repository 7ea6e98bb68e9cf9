/**
 * One durable workflow per session (backup, restore or incremental). It keeps
 * the queue of appended bundles, runs one child workflow per bundle (at most
 * `maxConcurrentBundles` at once, by priority then append order), numbers the
 * events children and activities report, and serves them to the tool, which
 * acknowledges what it has delivered. `release` completes it.
 */
import {
  type ActivityOptions,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
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
  outcomesQuery,
  publishFileUpdate,
  releaseUpdate,
  type AppendRequest,
  type FileMetaInput,
} from '../common/messages.js';
import type { createActivities } from '../activities/index.js';
import { ErrorCode, FAILURE_TYPE, type ErrorInfo } from '../common/errors.js';
import {
  DEFAULTS,
  bundleWorkflowId,
  type BundleOutcome,
  type BundleRequest,
  type EventBody,
  type EventsPage,
  type SessionEvent,
  type SessionKind,
  type SessionResult,
} from '../common/session.js';
import { codedFailure, isPlainUri } from '../common/rules.js';
import { bundleBackupWorkflow } from './bundleBackupWorkflow.js';
import { bundleRestoreWorkflow } from './bundleRestoreWorkflow.js';
import { publishSignal } from '../common/messages.js';
import { claimSessionBundles, releaseSessionBundles } from './sessionClaims.js';

export interface SessionInput {
  sessionId: string;
  kind: SessionKind;
  maxConcurrentBundles?: number;
  /** Keep the ohbackup search attributes up to date (they must be registered on the namespace). */
  searchAttributes?: boolean;
  /**
   * A session that names a device: that device's own task queue. Its bundle
   * children and every activity that touches the device's files run there;
   * the session workflow stays on its own queue. Absent: everything runs on
   * the session's queue.
   */
  deviceTaskQueue?: string;
  /** Set only by continue-as-new. */
  carried?: CarriedState;
}

interface BundleSlot extends BundleOutcome {
  request: BundleRequest;
  /** Next file index the session accepts for this bundle (repeats after a retry are dropped). */
  nextFileIndex: number;
  /** onBundleBegin (without error) was emitted: file events may follow. */
  begun: boolean;
  /** Its child workflow exists (signals can reach it). */
  childStarted: boolean;
  /** Restore: the tool published the bundle's files. */
  published: boolean;
  /** Restore: targets made before the bundle began; emitted right after its onBundleBegin. */
  deferred: EventBody[];
  /** The child's events that overtook its begin (it does not wait for the begin to land): accepted right after it. */
  early?: EventBody[];
  /** Restore: the uris the tool asked targets for (each once). */
  requested: string[];
  /** The tool could not be given one of its files (e.g. its fd cap): the bundle ends with this. */
  deliveryError?: ErrorInfo;
}

interface CarriedState {
  appendCalls: number;
  nextOrder: number;
  slots: BundleSlot[];
  events: SessionEvent[];
  lastSeq: number;
  acked: number;
  allEndSentFor: number;
  released: boolean;
}


// Quick, small activities: a short limit, so one lost with a killed worker is retried on a live one within seconds.
const quickActivityOptions: ActivityOptions = {
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '200 ms', nonRetryableErrorTypes: [FAILURE_TYPE] },
};

const scanActivityOptions: ActivityOptions = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumAttempts: 3 },
};

const fail = codedFailure;

export async function sessionWorkflow(input: SessionInput): Promise<SessionResult> {
  const maxConcurrent = input.maxConcurrentBundles ?? DEFAULTS.maxConcurrentBundles;
  // Every activity here touches the device's files: on a named device's own queue when there is one (undefined: the session's queue).
  const acts = proxyActivities<ReturnType<typeof createActivities>>({ ...quickActivityOptions, taskQueue: input.deviceTaskQueue });
  const scanActs = proxyActivities<ReturnType<typeof createActivities>>({ ...scanActivityOptions, taskQueue: input.deviceTaskQueue });
  const s: CarriedState = input.carried ?? {
    appendCalls: 0,
    nextOrder: 0,
    slots: [],
    events: [],
    lastSeq: 0,
    acked: 0,
    allEndSentFor: 0,
    released: false,
  };
  const slotOf = (name: string) => s.slots.find((b) => b.bundleName === name);

  // Search attributes let people find sessions by kind, bundle and state in the UI and with `ohbackup sessions`.
  // A function declaration: handlers that run in the very first activation may call it.
  function markSearch(state?: string): void {
    if (!input.searchAttributes) return;
    upsertSearchAttributes({ OhbackupBundles: searchableBundles(s.slots.map((b) => b.bundleName)), ...(state ? { OhbackupState: [state] } : {}) });
  }

  const emit = (body: EventBody) => {
    s.lastSeq += 1;
    s.events.push({ ...body, seq: s.lastSeq } as SessionEvent);
  };

  setHandler(
    appendBundlesUpdate,
    async (req) => {
      s.appendCalls += 1; // at once: a second call arriving while this one claims is refused by the validator
      // 13500013: a bundle another running session holds on this device begins and ends with that error; the rest run.
      const device = (b: AppendRequest['bundles'][number]) => b.targetBundle ?? b.bundleName;
      const held = await claimSessionBundles(req.bundles.filter((b) => !b.rejected && !slotOf(b.bundleName)).map(device), s.appendCalls, input.deviceTaskQueue);
      for (const b of req.bundles) {
        if (slotOf(b.bundleName)) continue; // appended already in this session: once is enough
        const conflict = b.rejected ? undefined : held.get(device(b));
        s.slots.push({
          bundleName: b.bundleName,
          state: s.released ? 'notStarted' : 'pending',
          files: 0,
          bytes: 0,
          nextFileIndex: 0,
          begun: false,
          childStarted: false,
          published: false,
          deferred: [],
          requested: [],
          request: { ...b, ...(conflict ? { rejected: conflict } : {}), priority: b.priority ?? 0, order: s.nextOrder++ },
        });
      }
      markSearch();
    },
    {
      validator: (_req) => {
        if (s.released) throw fail(ErrorCode.NOT_PERMITTED, 'the session was released');
        if (input.kind !== 'incremental' && s.appendCalls > 0) {
          throw fail(ErrorCode.NOT_PERMITTED, 'appendBundles may be called once per session');
        }
      },
    },
  );

  setHandler(
    releaseUpdate,
    () => {
      s.released = true;
    },
    {
      validator: () => {
        if (s.released) throw fail(ErrorCode.NOT_PERMITTED, 'the session was released already');
      },
    },
  );

  setHandler(cancelBundleUpdate, async (bundleName) => {
    const slot = slotOf(bundleName);
    if (!slot) return ErrorCode.CANCEL_NO_TASK;
    if (slot.state === 'pending') return ErrorCode.CANCEL_NOT_STARTED;
    if (slot.state !== 'running') return ErrorCode.CANCEL_NO_TASK;
    await getExternalWorkflowHandle(bundleWorkflowId(input.sessionId, bundleName)).cancel();
    return 0;
  });

  const restoreSlot = (meta: FileMetaInput, what: string): BundleSlot => {
    if (s.released) throw fail(ErrorCode.NOT_PERMITTED, 'the session was released');
    if (input.kind !== 'restore') throw fail(ErrorCode.NOT_PERMITTED, `${what} belongs to restore sessions`);
    const slot = slotOf(meta.bundleName);
    if (!slot) throw fail(ErrorCode.INVALID_ARGUMENT, `${meta.bundleName} is not in this session`);
    if (slot.state !== 'pending' && slot.state !== 'running') throw fail(ErrorCode.NOT_PERMITTED, `${meta.bundleName} has ended`);
    return slot;
  };

  setHandler(
    getFileHandleUpdate,
    async (meta) => {
      const slot = restoreSlot(meta, 'getFileHandle');
      slot.requested.push(meta.uri);
      const made = await acts.createRestoreTarget({ sessionId: input.sessionId, bundleName: slot.request.targetBundle ?? slot.bundleName, uri: meta.uri });
      const ev: EventBody = made.ok
        ? { type: 'fileReady', bundleName: slot.bundleName, fileIndex: 0, uri: meta.uri, size: 0, path: made.path, writable: true }
        : { type: 'fileReady', bundleName: slot.bundleName, fileIndex: 0, uri: meta.uri, size: 0, path: '', error: made.error };
      if (slot.begun) accept(withNextIndex(slot, ev));
      else slot.deferred.push(ev);
    },
    {
      validator: (meta) => {
        restoreSlot(meta, 'getFileHandle');
        if (!isPlainUri(meta.uri)) throw fail(ErrorCode.INVALID_ARGUMENT, `uri "${meta.uri}" may hold only 0-9, a-z, A-Z, "_" and "."`);
        if (meta.uri === '.' || meta.uri === '..') throw fail(ErrorCode.INVALID_ARGUMENT, `uri "${meta.uri}" is not a file name`);
        if (slotOf(meta.bundleName)!.requested.includes(meta.uri)) throw fail(ErrorCode.INVALID_ARGUMENT, `a target for ${meta.uri} was asked for already`);
      },
    },
  );

  setHandler(
    publishFileUpdate,
    async (meta) => {
      const slot = restoreSlot(meta, 'publishFile');
      // A single file's publish needs nothing: the bundle applies its files once the whole bundle is published.
      if (meta.uri !== '' || slot.published) return;
      slot.published = true;
      if (slot.childStarted) await getExternalWorkflowHandle(bundleWorkflowId(input.sessionId, slot.bundleName)).signal(publishSignal);
    },
    {
      validator: (meta) => {
        restoreSlot(meta, 'publishFile');
        if (meta.uri !== '' && !isPlainUri(meta.uri)) throw fail(ErrorCode.INVALID_ARGUMENT, `uri "${meta.uri}" may hold only 0-9, a-z, A-Z, "_" and "."`);
      },
    },
  );

  let scans = 0;
  setHandler(
    getBackupDataSizeUpdate,
    (req) => {
      // The scan runs on while the session goes on; its reports come through bundleEvents.
      scans += 1;
      void scanActs
        .scanBackupSize({ sessionWorkflowId: workflowInfo().workflowId, precise: req.precise, dataList: req.dataList })
        .catch(() => undefined)
        .finally(() => (scans -= 1));
    },
    {
      validator: (_req) => {
        if (s.released) throw fail(ErrorCode.NOT_PERMITTED, 'the session was released');
        if (input.kind === 'restore') throw fail(ErrorCode.NOT_PERMITTED, 'getBackupDataSize belongs to backup sessions');
      },
    },
  );

  setHandler(ackSignal, (seq) => {
    if (seq <= s.acked) return;
    s.acked = Math.min(seq, s.lastSeq);
    const keepFrom = s.events.findIndex((e) => e.seq > s.acked);
    s.events = keepFrom < 0 ? [] : s.events.slice(keepFrom);
  });

  setHandler(deliveryStoppedSignal, ({ bundleName, error, files, bytes }) => {
    const slot = slotOf(bundleName);
    if (!slot || slot.deliveryError) return;
    slot.deliveryError = error;
    slot.files = files;
    slot.bytes = bytes;
    if (slot.state === 'running') {
      // Nothing more of it will reach the tool: stop its work; its end then carries `error`.
      if (slot.childStarted) void getExternalWorkflowHandle(bundleWorkflowId(input.sessionId, bundleName)).cancel().catch(() => undefined);
    } else if (slot.state === 'done' || slot.state === 'cancelled') {
      // Ended already (a bundle's own failure stays its outcome).
      slot.state = 'failed';
      slot.error = error;
    }
  });

  setHandler(bundleEventsSignal, (bodies) => {
    for (const body of bodies) accept(body);
    showDetails(); // costs no history: the UI's current details follow the files as they go
  });

  setHandler(eventsQuery, (after, max = 1000) => {
    const events = s.events.filter((e) => e.seq > after).slice(0, max);
    return { events, acked: s.acked, lastSeq: s.lastSeq, released: s.released };
  });
  setHandler(outcomesQuery, () => s.slots.map(outcome));

  /** Applies one reported event to the bundle's state, dropping repeats and anything after its end. */
  function accept(body: EventBody): void {
    if (body.type === 'allBundlesEnd' || body.type === 'sizeReport') return emit(body);
    const slot = slotOf(body.bundleName);
    if (!slot) return;
    const ended = slot.state === 'done' || slot.state === 'failed' || slot.state === 'cancelled';
    if (body.type !== 'bundleBegin' && slot.state === 'running' && !slot.begun && !slot.error) {
      (slot.early ??= []).push(body);
      return;
    }
    switch (body.type) {
      case 'bundleBegin':
        if (slot.state !== 'pending' && slot.state !== 'running') return;
        if (slot.begun) return;
        if (body.error) slot.error = body.error;
        else slot.begun = true;
        emit(body);
        // Restore targets the tool asked for before the bundle began follow its onBundleBegin, then what overtook it.
        for (const ev of slot.deferred.splice(0)) accept(withNextIndex(slot, ev));
        for (const ev of slot.early?.splice(0) ?? []) accept(ev);
        return;
      case 'fileReady':
        if (ended || slot.deliveryError || body.fileIndex < slot.nextFileIndex) return;
        slot.nextFileIndex = body.fileIndex + 1;
        slot.files += 1;
        slot.bytes += body.size;
        break;
      case 'process':
      case 'resultReport':
        if (ended) return;
        break;
      case 'bundleEnd':
        if (ended) return;
        // The tool did not get all of it: it ends with why, unless it failed on its own (its cancel was the session's doing).
        if (slot.deliveryError && (!body.error || body.cancelled)) body = { ...body, error: slot.deliveryError, cancelled: false };
        slot.state = body.cancelled ? 'cancelled' : body.error ? 'failed' : 'done';
        if (body.error) slot.error = body.error;
        break;
    }
    emit(body);
  }

  /** A session-assigned file index, for events the session makes itself (restore targets). */
  function withNextIndex(slot: BundleSlot, ev: EventBody): EventBody {
    return ev.type === 'fileReady' ? { ...ev, fileIndex: slot.nextFileIndex } : ev;
  }

  const running = () => s.slots.filter((b) => b.state === 'running').length;
  const isEnded = (name: string) => {
    const st = slotOf(name)?.state;
    return st === undefined || (st !== 'pending' && st !== 'running');
  };
  // Restore: a bundle waits for the bundles of this session it depends on (restoreDeps).
  const ready = (b: BundleSlot) => (b.request.restoreDeps ?? []).every((dep) => dep === b.bundleName || isEnded(dep));
  const nextPending = () =>
    s.slots
      .filter((b) => b.state === 'pending' && ready(b))
      .sort((a, b) => b.request.priority - a.request.priority || a.request.order - b.request.order)[0];
  const allEnded = () => s.slots.length > 0 && s.slots.every((b) => b.state !== 'pending' && b.state !== 'running');

  /** Starts the child of a slot already marked running. */
  async function startBundle(slot: BundleSlot): Promise<void> {
    if (slot.request.rejected) {
      // Known not to run (e.g. absent from the capability file): it begins and ends with the reason.
      accept({ type: 'bundleBegin', bundleName: slot.bundleName, error: slot.request.rejected });
      accept({ type: 'bundleEnd', bundleName: slot.bundleName, error: slot.request.rejected });
      return;
    }
    const published = slot.published;
    const target = slot.request.targetBundle && slot.request.targetBundle !== slot.bundleName ? ` into ${slot.request.targetBundle}` : '';
    await startChild(input.kind === 'restore' ? bundleRestoreWorkflow : bundleBackupWorkflow, {
      workflowId: bundleWorkflowId(input.sessionId, slot.bundleName),
      args: [{ sessionId: input.sessionId, sessionWorkflowId: workflowInfo().workflowId, kind: input.kind, request: slot.request, published }],
      // The session may continue-as-new while children run; it stops them itself on release.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      taskQueue: input.deviceTaskQueue,
      staticSummary: `${input.kind} of ${slot.bundleName}${target}`,
    });
    slot.childStarted = true;
    // Published while the child was being started: tell it now.
    if (slot.published && !published) await getExternalWorkflowHandle(bundleWorkflowId(input.sessionId, slot.bundleName)).signal(publishSignal);
  }


  // The UI renders current details as Markdown: one list item per bundle.
  function showDetails(): void {
    setCurrentDetails(
      s.slots.map((b) => `- \`${b.bundleName}\`: ${b.state}, ${b.files} files, ${b.bytes} bytes${b.error ? ` (error ${b.error.code})` : ''}`).join('\n'),
    );
  }

  for (;;) {
    showDetails();
    await condition(
      () =>
        s.released ||
        (running() < maxConcurrent && nextPending() !== undefined) ||
        (allEnded() && s.allEndSentFor < s.slots.length) ||
        workflowInfo().continueAsNewSuggested,
    );
    if (s.released) break;
    // Pick every bundle that may start now, then start them together (one workflow task, not one each).
    const starting: BundleSlot[] = [];
    while (running() < maxConcurrent) {
      const slot = nextPending();
      if (!slot) break;
      slot.state = 'running';
      starting.push(slot);
    }
    await Promise.all(starting.map(startBundle));
    if (allEnded() && s.allEndSentFor < s.slots.length) {
      s.allEndSentFor = s.slots.length;
      emit({ type: 'allBundlesEnd' });
    }
    if (workflowInfo().continueAsNewSuggested) {
      await condition(() => allHandlersFinished() && scans === 0);
      return continueAsNew<typeof sessionWorkflow>({ ...input, carried: s });
    }
  }

  // release: stop what runs, report what never started, clean the session's temp data.
  for (const slot of s.slots) {
    if (slot.state === 'running') {
      await getExternalWorkflowHandle(bundleWorkflowId(input.sessionId, slot.bundleName)).cancel().catch(() => undefined);
    }
  }
  await condition(() => running() === 0, '2 minutes');
  for (const slot of s.slots) {
    if (slot.state === 'pending') slot.state = 'notStarted';
  }
  await acts.cleanSessionTemp({ sessionId: input.sessionId, bundleNames: s.slots.map((b) => b.request.targetBundle ?? b.bundleName) });
  markSearch('released');
  showDetails();
  await condition(allHandlersFinished);
  // Its bundles are free for other sessions on the device (13500013).
  if (s.slots.some((b) => !b.request.rejected)) await releaseSessionBundles(input.deviceTaskQueue);
  return {
    sessionId: input.sessionId,
    kind: input.kind,
    bundles: s.slots.map(outcome),
    trailingEvents: s.events.filter((e) => e.seq > s.acked),
  };
}

function outcome(b: BundleSlot): BundleOutcome {
  return { bundleName: b.bundleName, state: b.state, error: b.error, files: b.files, bytes: b.bytes };
}

/**
 * The bundle names a session lists in OhbackupBundles: as many as fit in the
 * server's size limit for one search attribute value (2 KB by default), so a
 * session of hundreds of bundles stays findable by its first ones.
 */
function searchableBundles(names: string[]): string[] {
  const out: string[] = [];
  let size = 0;
  for (const n of names) {
    size += n.length + 4;
    if (size > 1800) break;
    out.push(n);
  }
  return out;
}
