/**
 * What the three session classes share: the session workflow behind them, the
 * event pump that feeds the callbacks, and release/cancel/getLocalCapabilities.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { WithStartWorkflowOperation, type Client, type WorkflowHandle, type WorkflowStartOptions } from '@temporalio/client';
import { BusinessError } from '../../common/businessError.js';
import { OhbackupDevice, OhbackupKind, OhbackupState } from '../../common/searchAttributes.js';
import { ErrorCode } from '../../common/errors.js';
import { clampSendRate } from '../../common/rules.js';
import type { SessionKind, SessionResult } from '../../common/session.js';
import {
  appendBundlesUpdate,
  cancelBundleUpdate,
  deliveryStoppedSignal,
  eventsQuery,
  getBackupDataSizeUpdate,
  releaseUpdate,
  type AppendRequest,
  type SessionOrigin,
  type SessionWorkflow,
} from '../../common/messages.js';
import { z } from 'zod';
import { DeviceIdSchema, deviceLabel, workerTaskQueue } from '../../common/deviceQueue.js';
import { device as configuredDevice, getClient, taskQueue } from '../connection.js';
import { signalBundle, type BundleSignal } from './control.js';
import { EventPump } from './eventPump.js';
import { SessionEndedElsewhere, toBusinessError } from '../failures.js';
import { openCapabilities } from '../capabilities.js';
import { registry, type OpenSession } from '../registry.js';
import type { FileData, GeneralCallbacks, IncrementalBackupTime } from '../types.js';
import { cleanBundleTemp, askBundleHook } from '../deviceRequests.js';
import { readSettings } from '../../config/env.js';
import { BundleNameArg, CallbacksArg, DataListArg, ExtInfoArg, SessionIdArg, SessionOptionsArg, parseArg } from '../validate.js';

export interface SessionOptions {
  /** The session's ID (its workflow ID); default `ohbackup-<kind>-<uuid>`. */
  sessionId?: string;
  /** The device's task queue; default from `configure` / OHBACKUP_TASK_QUEUE. */
  taskQueue?: string;
  /**
   * The device (of several, each served by `ohbackup worker --device ID`)
   * whose bundles this session backs up or restores: the session workflow runs
   * on `taskQueue`, its bundle children and device activities on the device's
   * own queue. Default: the device `configure` names; null: none.
   */
  device?: string | null;
  /** Bundles run at once (default 3). */
  maxConcurrentBundles?: number;
  /**
   * Backup: the send rate (files per second, 0–800, above 800 is 800) each
   * bundle of a new session starts at, instead of the reference's 60:
   * `updateSendRate` still changes it per bundle, but a rate set here costs
   * no signal per bundle. Ignored on attach (the session keeps its own).
   */
  sendRate?: number;
  /** Bind to this running session instead of starting one (re-attach after a tool restart). */
  attachTo?: string;
  /**
   * A file where the tool records the last event it delivered, after each
   * callback. Re-attaching with the same file resumes exactly after it: no
   * callback twice even when the tool was killed between a callback and its
   * acknowledgement reaching the workflow.
   */
  cursorFile?: string;
  /** The Temporal client to use instead of the tool library's connection (e.g. an activity's own, in a scheduled run). */
  client?: Client;
  /**
   * Fds handed to `onFileReady` that the tool may hold open at once (default
   * OHBACKUP_MAX_OPEN_FDS, else 256). At the cap delivery waits for the tool
   * to close one; see `fdWaitMs`.
   */
  maxOpenFds?: number;
  /**
   * How long delivery waits at the fd cap (default OHBACKUP_FD_WAIT_MS, else
   * 30 000 ms). If the tool closes none in that time, the next file gets
   * onFileReady(13900011) and its bundle's delivery ends with 13900011.
   */
  fdWaitMs?: number;
  /**
   * How long the session waits for a silent tool (default 5 minutes; 1 s to 4 h):
   * the tool library acknowledges at least every third of it while the tool
   * lives, and a session that hears nothing for this long ends by itself
   * (abandoned: its bundles end, its claims are freed). Attach within it to resume.
   */
  toolTimeoutMs?: number;
  /**
   * SessionRestore: keep each bundle's data/ tree that the restore replaces as
   * `data.before-<sessionId>` beside it, instead of removing it.
   */
  keepPrevious?: boolean;
  /** What the session works on, in words (e.g. "backup set /srv/sets/s1"): shown in the Temporal UI with who started it. */
  target?: string;
}

export abstract class SessionBase implements OpenSession {
  protected abstract readonly kind: SessionKind;
  readonly sessionId: string;
  readonly taskQueue: string;
  /** The device this session names, if any. */
  readonly device?: string;
  /** Where its device work runs: the device's own queue, else `taskQueue`. */
  readonly deviceQueue: string;
  protected released = false;
  private bound?: { pump: EventPump };
  /** Each bundle's last message on its way: the next one to that bundle goes after it (other bundles' go at once). */
  private readonly signals = new Map<string, Promise<void>>();
  /** Bundles whose onBundleBegin runs now, with the rate the tool set there. */
  private readonly beginning = new Map<string, { sendRate?: number }>();
  private readonly ready: Promise<{ client: Client; handle: WorkflowHandle<SessionWorkflow>; pump: EventPump }>;
  /** Set once the session's start is on its way (perhaps waiting for the first append's preparation): an append from then on is an update of its own. */
  private startSent = false;
  /**
   * An append made before the start went out: it goes with the start, so the workflow takes both in one task. Its
   * request may still be in preparation (an increment checks and copies its base manifests): the start waits for it.
   */
  private firstAppend?: { req: Promise<AppendRequest>; resolve: (done: Promise<void>) => void };

  protected readonly options: SessionOptions;

  constructor(
    protected readonly callbacks: GeneralCallbacks,
    kind: SessionKind,
    options: SessionOptions | undefined,
  ) {
    parseArg(CallbacksArg, callbacks, 'callbacks');
    // Checked before anything starts: a rejected constructor leaves no workflow behind.
    this.options = options = parseArg(SessionOptionsArg, options === undefined ? {} : options, 'options');
    this.taskQueue = options.taskQueue ?? taskQueue();
    const named = options.device === undefined ? configuredDevice() : options.device;
    if (named !== null && named !== undefined) this.device = parseArg(DeviceIdSchema, named, 'options.device');
    this.deviceQueue = workerTaskQueue(this.taskQueue, this.device);
    this.sessionId = options.attachTo ?? options.sessionId ?? `ohbackup-${kind}-${randomUUID()}`;
    this.ready = this.bind(kind);
    // Failures surface on the next call; keep an unobserved one from crashing the tool.
    this.ready.then((r) => (this.bound = r)).catch(() => undefined);
    registry.add(this);
  }

  private async bind(kind: SessionKind) {
    const client = this.options.client ?? (await getClient());
    let startAfter = 0;
    let handle: WorkflowHandle<SessionWorkflow>;
    if (!this.options.attachTo) {
      const o = this.options;
      const origin = sessionOrigin(o.target);
      const start: WorkflowStartOptions<SessionWorkflow> = {
        workflowId: this.sessionId,
        taskQueue: this.taskQueue,
        args: [
          {
            sessionId: this.sessionId,
            kind,
            origin,
            maxConcurrentBundles: o.maxConcurrentBundles,
            ...(o.sendRate !== undefined ? { sendRate: clampSendRate(o.sendRate) } : {}),
            ...(o.toolTimeoutMs !== undefined ? { toolTimeoutMs: o.toolTimeoutMs } : {}),
            searchAttributes: searchAttributesOn(),
            ...(this.device ? { deviceTaskQueue: this.deviceQueue } : {}),
          },
        ],
        staticSummary: `ohbackup ${kind} session${this.device ? ` on device ${this.device}` : ''}${o.target ? `: ${o.target}` : ''}`,
        staticDetails:
          // Markdown in the UI: the pattern in code quotes, or `<bundle>` would vanish as an HTML tag.
          `A ${kind} session started by ${origin.user}@${origin.host} (${process.title}, pid ${process.pid})${o.target ? ` on ${o.target}` : ''}. ` +
          `Bundles run as child workflows \`${this.sessionId}/<bundle>\`` +
          (this.device ? ` on task queue \`${this.deviceQueue}\` (device ${this.device}).` : '.') +
          ' Once it is released, its result (and memo) hold the table of every bundle.',
        ...(searchAttributesOn()
          ? {
              typedSearchAttributes: [
                { key: OhbackupKind, value: kind },
                { key: OhbackupState, value: 'running' },
                { key: OhbackupDevice, value: deviceLabel(this.deviceQueue) },
              ],
            }
          : {}),
      };
      // One turn of the event loop first: the tool's appendBundles right after the constructor then rides with the
      // start (update-with-start), instead of waiting at the server for the workflow's first task and taking a second.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const first = this.firstAppend;
      this.firstAppend = undefined;
      this.startSent = true;
      // A preparation that fails fails its append (append() awaits it too); the session still starts, without it.
      const firstReq = await first?.req.catch(() => undefined);
      if (first && firstReq) {
        const operation = new WithStartWorkflowOperation<SessionWorkflow>('sessionWorkflow', { ...start, workflowIdConflictPolicy: 'FAIL' });
        const update = client.workflow.startUpdateWithStart(appendBundlesUpdate, {
          args: [firstReq],
          waitForStage: 'ACCEPTED',
          startWorkflowOperation: operation,
        });
        first.resolve(update.then((accepted) => accepted.result()));
        handle = await operation.workflowHandle();
      } else handle = await client.workflow.start<SessionWorkflow>('sessionWorkflow', start);
    } else {
      handle = client.workflow.getHandle<SessionWorkflow>(this.sessionId);
      // Resume after what an earlier tool acknowledged, or delivered if it kept a cursor.
      startAfter = Math.max((await handle.query(eventsQuery, 0, 0)).acked, await readCursor(this.options.cursorFile));
    }
    const settings = readSettings();
    const pump = new EventPump(handle, this.callbacks, startAfter, {
      cursorFile: this.options.cursorFile,
      maxOpenFds: this.options.maxOpenFds ?? settings.maxOpenFds,
      fdWaitMs: this.options.fdWaitMs ?? settings.fdWaitMs,
      // The session's outcome must not count files the tool never got.
      onDeliveryStopped: (bundleName, error, got) => {
        void handle.signal(deliveryStoppedSignal, { bundleName, error, ...got }).catch((err) => warn('the end of a delivery', err));
      },
      // Backup hand-over waits (briefly) for the tool's mark (a query on the bundle, no history); a rate set inside
      // onBundleBegin goes first, as its one signal.
      onBundleBeginning: kind === 'restore' ? undefined : (bundleName) => this.beginning.set(bundleName, {}),
      onBundleBegun:
        kind === 'restore'
          ? undefined
          : (bundleName) => {
              const begun = this.beginning.get(bundleName);
              this.beginning.delete(bundleName);
              // A bundle with nothing to hand over may have ended before either reaches it: nothing lost.
              if (begun?.sendRate !== undefined) this.tell(bundleName, { what: 'updateSendRate', value: begun.sendRate }, true);
              this.tell(bundleName, { what: 'toolBegun' }, true);
            },
    });
    pump.start();
    return { client, handle, pump };
  }

  /** Runs `fn` on the bound session, turning any failure into a BusinessError. */
  protected async call<T>(fn: (bound: Awaited<SessionBase['ready']>) => Promise<T>): Promise<T> {
    if (this.released) throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: the session was released');
    try {
      return await fn(await this.ready);
    } catch (err) {
      // The workflow completed under us (released by another tool, or terminated): the session is over.
      if ((err as Error)?.name === 'WorkflowNotFoundError') {
        this.released = true;
        throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: the session has ended');
      }
      throw toBusinessError(err);
    }
  }

  /**
   * Sends the append. `request` may be a promise (its preparation): given before the constructor's turn of the event
   * loop ends, the append still rides with the start, which waits for it.
   */
  protected async append(request: AppendRequest | Promise<AppendRequest>): Promise<void> {
    const prepared = Promise.resolve(request);
    const withStart = this.rideWithStart(prepared);
    const req = await prepared;
    await this.call(async ({ handle, pump }) => {
      await (withStart ?? handle.executeUpdate(appendBundlesUpdate, { args: [req] }));
      // Only once the session took them (a refused call must not leave them 'appended' in the tool's view);
      // a bundle that already began has its own entry.
      for (const b of req.bundles) if (!pump.bundles.has(b.bundleName)) pump.bundles.set(b.bundleName, 'appended');
    });
  }

  /** The append's outcome when it goes with the session's start (the start has not gone out yet); else undefined. */
  private rideWithStart(req: Promise<AppendRequest>): Promise<void> | undefined {
    if (this.startSent || this.firstAppend || this.released || this.options.attachTo) return undefined;
    const done = new Promise<void>((resolve) => (this.firstAppend = { req, resolve: (outcome) => resolve(outcome) }));
    // A start that fails fails the append through `ready` too: this copy must not reject unobserved meanwhile.
    done.catch(() => undefined);
    return done;
  }

  getLocalCapabilities(): Promise<FileData> {
    return this.call(({ client }) => openCapabilities(client, this.deviceQueue));
  }

  /** Ends the session: the workflow stops what still runs, cleans up and completes. Later calls → 13900001. */
  async release(): Promise<void> {
    let endedElsewhere: SessionResult | undefined;
    await this.call(async ({ handle, pump }) => {
      this.released = true;
      pump.holdAcks(true);
      try {
        let stopping: Promise<void> | undefined;
        const result = await handle.executeUpdate(releaseUpdate, { args: [{}] }).then(
          () => {
            // Released: what the tool has not been given comes with the result (acknowledgements are held), so no
            // more polls. One still running as the workflow completes would have it replayed to answer, and the
            // release would wait for that.
            stopping = pump.stop();
            return handle.result();
          },
          async (err: unknown) => {
            // Released by another client, or abandoned: its result still holds the ends this tool has not seen.
            const ended = await completedResult(handle);
            if (!ended) {
              pump.holdAcks(false);
              throw err;
            }
            return (endedElsewhere = ended);
          },
        );
        // Completed, acknowledgements still held: its result holds the events not acknowledged yet.
        await (stopping ?? pump.stop());
        await pump.deliverAll(result.trailingEvents);
      } finally {
        registry.remove(this);
      }
    });
    if (endedElsewhere)
      throw SessionEndedElsewhere.of(endedElsewhere) ?? new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: the session has ended');
  }

  /** 0: cancel sent; 13500011: appended but not started; 13500012: not in this session or already ended. */
  cancel(bundleName: string): number {
    parseArg(BundleNameArg, bundleName, 'bundleName');
    const view = this.bundleView(bundleName);
    if (view === 'appended') return ErrorCode.CANCEL_NOT_STARTED;
    if (view !== 'running' || this.released) return ErrorCode.CANCEL_NO_TASK;
    this.bound?.pump.cancelledByTool(bundleName);
    void this.ready.then(({ handle }) => handle.executeUpdate(cancelBundleUpdate, { args: [bundleName] })).catch((err) => warn('cancel', err));
    return 0;
  }

  /**
   * Starts a size scan of `dataList`; reports arrive through onBackupSizeReport
   * every 5 s (at once when done sooner) until every listed bundle was reported.
   */
  protected startSizeScan(isPreciseScan: boolean, dataList: IncrementalBackupTime[]): Promise<void> {
    parseArg(z.boolean(), isPreciseScan, 'isPreciseScan');
    const list = parseArg(DataListArg, dataList, 'dataList');
    return this.call(({ handle }) => handle.executeUpdate(getBackupDataSizeUpdate, { args: [{ precise: isPreciseScan, dataList: list }] }));
  }

  /** Empties the bundle's backup/backup and backup/restore temp folders; true on success. */
  cleanBundleTempDir(bundleName: string): Promise<boolean> {
    parseArg(BundleNameArg, bundleName, 'bundleName');
    return this.call(({ client }) => cleanBundleTemp(client, this.deviceQueue, bundleName));
  }

  /** Asks the bundle's compatibility hook (getBackupCompatibilityInfo, or getRestoreCompatibilityInfo on restore); '' without one. */
  getCompatibilityInfo(bundleName: string, extInfo: string): Promise<string> {
    parseArg(BundleNameArg, bundleName, 'bundleName');
    parseArg(ExtInfoArg, extInfo, 'extInfo');
    const hook = this.kind === 'restore' ? 'getRestoreCompatibilityInfo' : 'getBackupCompatibilityInfo';
    return this.call(({ client }) => askBundleHook(client, this.deviceQueue, bundleName, hook, extInfo));
  }

  /** The workflow's own answer to cancel (the synchronous `cancel` answers from the tool's view). */
  cancelAsync(bundleName: string): Promise<number> {
    parseArg(BundleNameArg, bundleName, 'bundleName');
    return this.call(({ handle }) => handle.executeUpdate(cancelBundleUpdate, { args: [bundleName] }));
  }

  bundleView(bundleName: string) {
    return this.bound?.pump.bundles.get(bundleName);
  }

  signalBundle(bundleName: string, what: 'updateTimer' | 'updateSendRate', value: number): void {
    const begun = this.beginning.get(bundleName);
    if (what === 'updateSendRate' && begun) {
      begun.sendRate = value;
      return;
    }
    this.tell(bundleName, { what, value });
  }

  /**
   * One after another per bundle: two quick calls must reach the bundle in the order they were made (a rate
   * before the mark). Bundles do not wait for each other: an increment's packs end within a second, and each
   * hand-over waits for its own mark, which queued behind every other bundle's signal and query took 8 round trips.
   */
  private tell(bundleName: string, signal: BundleSignal, endedIsFine = false): void {
    const sent = (this.signals.get(bundleName) ?? Promise.resolve())
      .then(() => this.ready)
      .then(({ client }) => signalBundle(client, this.sessionId, bundleName, signal))
      .catch((err) => (endedIsFine && (err as Error)?.name === 'WorkflowNotFoundError' ? undefined : warn(signal.what, err)));
    this.signals.set(bundleName, sent);
    // The last one sent drops its entry: the map holds only bundles with a message on its way.
    void sent.finally(() => this.signals.get(bundleName) === sent && this.signals.delete(bundleName));
  }
}

/** The options of `attach(sessionId, callbacks, options)`: checked, with the session to attach to. */
export function attachOptions(sessionId: string, options: Omit<SessionOptions, 'attachTo' | 'sessionId'> | undefined): SessionOptions {
  const attachTo = parseArg(SessionIdArg, sessionId, 'sessionId');
  return { ...parseArg(SessionOptionsArg, options === undefined ? {} : options, 'options'), attachTo };
}

/** Who starts a session, for the UI (host and login name only: nothing secret). */
function sessionOrigin(target?: string): SessionOrigin {
  let user = process.env.USER ?? '';
  try {
    user = os.userInfo().username;
  } catch {
    // No passwd entry for this uid (a container): keep $USER.
  }
  return { host: os.hostname(), user: user || 'unknown', ...(target ? { target } : {}) };
}

/** The ohbackup search attributes are set unless OHBACKUP_SEARCH_ATTRIBUTES=off (a namespace without them registered). */
function searchAttributesOn(): boolean {
  return process.env.OHBACKUP_SEARCH_ATTRIBUTES !== 'off';
}

/**
 * The result of a session workflow released by someone else: completed, or
 * released and completing (undefined while it runs unreleased, or when it failed or was terminated).
 */
async function completedResult(handle: WorkflowHandle<SessionWorkflow>): Promise<SessionResult | undefined> {
  try {
    const { status } = await handle.describe();
    if (status.name === 'RUNNING' && !(await handle.query(eventsQuery, 0, 0)).released) return undefined;
    if (status.name !== 'RUNNING' && status.name !== 'COMPLETED') return undefined;
    return await handle.result();
  } catch {
    return undefined;
  }
}

async function readCursor(file?: string): Promise<number> {
  if (!file) return 0;
  const text = await readFile(file, 'utf8').catch(() => '0');
  return Number.parseInt(text, 10) || 0;
}

function warn(what: string, err: unknown): void {
  process.emitWarning(`ohbackup: ${what} could not be delivered: ${toBusinessError(err).message}`);
}
