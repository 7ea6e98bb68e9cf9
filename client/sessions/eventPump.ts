/**
 * Turns a session's numbered event stream into GeneralCallbacks calls, in
 * order, each once. It reads the session workflow with a query (no history
 * cost), delivers, then acknowledges what it delivered, a burst at a time, so
 * the workflow can drop it and a re-attaching tool resumes after it. A query that cannot be
 * answered (no worker serving the session, or no Temporal service) is an
 * outage: `onBackupServiceDied` fires once for it (`./outage.ts` tells it
 * from a service that is only slow to answer).
 *
 * The fds it hands over are capped per session (`maxOpenFds`): at the cap it
 * stops pulling events (and acknowledging them) until the tool closes one. If
 * none is closed within `fdWaitMs`, that file gets onFileReady(13900011) and
 * the bundle's delivery ends there: its later files are not delivered and it
 * ends with that error (the session is told, so its outcome says so too).
 *
 * Acknowledgements are also the tool's lease on its session: while the tool
 * lives, the pump acknowledges at least every third of the session's tool
 * timeout, repeating the last one when nothing new arrived, so an idle tool
 * costs its session one signal per third of the timeout and a dead one is
 * noticed (the session then ends by itself).
 */
import { closeSync, open, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { BusinessError } from '../../common/businessError.js';
import { ErrorCode, codeForSystemError, errorInfo, type ErrorInfo } from '../../common/errors.js';
import type { EventsPage, SessionEvent } from '../../common/session.js';
import { ackSignal, eventsQuery } from '../../common/messages.js';
import { OpenFds } from './openFds.js';
import { OutageWatch, failureOf } from './outage.js';
import type { GeneralCallbacks } from '../types.js';

const openFd = promisify(open);

/** A cursor is a decimal seq, space-padded on the left to this width, so that each save overwrites the whole of it. */
const CURSOR_WIDTH = 16;

/**
 * Records the cursor: a kill mid-save must never leave it empty or short. The
 * first save replaces the file atomically (whatever it held before); the
 * later ones overwrite its fixed-width content in place with one write,
 * which a kill cannot tear: a rename per event cost more than the event
 * (ext4 starts writing a file out when it is renamed over another).
 */
export class CursorWriter {
  #replaced = false;

  constructor(readonly file: string) {}

  save(seq: number): void {
    const text = String(seq).padStart(CURSOR_WIDTH, ' ');
    if (!this.#replaced) {
      writeFileSync(`${this.file}.tmp`, text);
      renameSync(`${this.file}.tmp`, this.file);
      this.#replaced = true;
      return;
    }
    const fd = openSync(this.file, 'r+');
    try {
      writeSync(fd, text, 0);
    } finally {
      closeSync(fd);
    }
  }
}

export type BundleView = 'appended' | 'running' | 'ended';

/** Idle polling starts this often and slows down to IDLE_POLL_MAX_MS while nothing happens: each query is work for a worker. */
const IDLE_POLL_MS = 25;
const IDLE_POLL_MAX_MS = 400;
/**
 * The slowest polling while a bundle of the tool's is appended or running: its next event (files after a pack,
 * its end, the session's end) is due, and the poll's wait is latency added to the whole session.
 */
const BUSY_POLL_MAX_MS = 100;
const QUERY_DEADLINE_MS = 5_000;
/**
 * Acknowledgements are signals, each a history event and mostly a workflow task of the session's, and bundles'
 * events come in bursts (a begin, a batch of files, an end): what was delivered is acknowledged once it has waited
 * this long, or once this many events wait (they are the session's state, and what a re-attaching tool without a
 * cursor gets again), at once when the session asks (a continue-as-new waits for it), and at the end.
 */
const ACK_AFTER_MS = 1_000;
const ACK_PENDING_MAX = 256;

export interface PumpOptions {
  /** Where the last delivered seq is recorded after each callback, so a re-attaching tool skips exactly what it delivered. */
  cursorFile?: string;
  /** Fds handed to the tool and not closed yet, at most. */
  maxOpenFds: number;
  /** How long delivery waits at the cap for the tool to close an fd. */
  fdWaitMs: number;
  /** A bundle's delivery stopped on the tool's side: what the tool did get of it. */
  onDeliveryStopped?: (bundleName: string, error: ErrorInfo, got: { files: number; bytes: number }) => void;
  /** The tool's onBundleBegin for a bundle that runs is about to be called, and has returned. */
  onBundleBeginning?: (bundleName: string) => void;
  onBundleBegun?: (bundleName: string) => void;
}

export class EventPump {
  /** Last event seq delivered to the callbacks. */
  delivered: number;
  /** The tool's own view of each bundle, fed by the events; the synchronous calls answer from it. */
  readonly bundles = new Map<string, BundleView>();
  private acked: number;
  private lastAckAt = 0;
  /** When the oldest event delivered and not acknowledged yet was delivered. */
  private unackedSince?: number;
  private stopped = false;
  private acksHeld = false;
  private wake?: () => void;
  private loop?: Promise<void>;
  private readonly outage = new OutageWatch();
  private readonly fds = new OpenFds();
  /** Bundles whose delivery ended on the tool's side, and why. */
  private readonly deliveryStopped = new Map<string, ErrorInfo>();
  /** Bundles the tool cancelled: files already queued for them are not handed over (their data is being removed). */
  private readonly cancelled = new Set<string>();
  /** Files (and bytes) of each bundle the tool was given. */
  private readonly got = new Map<string, { files: number; bytes: number }>();
  private readonly cursor?: CursorWriter;
  private heartbeat?: { everyMs: number; timer: NodeJS.Timeout };

  constructor(
    private readonly handle: WorkflowHandle,
    private readonly callbacks: GeneralCallbacks,
    startAfter: number,
    private readonly options: PumpOptions,
  ) {
    this.delivered = startAfter;
    this.acked = startAfter;
    if (options.cursorFile) this.cursor = new CursorWriter(options.cursorFile);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops polling, with a last acknowledgement unless they are held; events after this are delivered only through `deliverAll`. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeat?.timer);
    this.wake?.();
    await this.loop;
  }

  /**
   * While the session releases: no acknowledgement and no lease renewal (signals). One landing while the
   * workflow completes fails its completing workflow task (an unhandled command) and replays it; its result
   * holds the events not acknowledged anyway. Polling (queries) goes on. `false` again if the release is refused.
   */
  holdAcks(hold: boolean): void {
    this.acksHeld = hold;
  }

  /** Delivers events not delivered yet (e.g. a completed session's trailing events). */
  async deliverAll(events: SessionEvent[]): Promise<void> {
    for (const ev of events) if (ev.seq > this.delivered) await this.deliver(ev);
  }

  private async run(): Promise<void> {
    let idle = IDLE_POLL_MS;
    while (!this.stopped) {
      const asked = Date.now();
      let page: EventsPage;
      try {
        page = await this.handle.client.connection.withDeadline(Date.now() + QUERY_DEADLINE_MS, () => this.handle.query(eventsQuery, this.delivered, 500));
        if (page.toolTimeoutMs) this.keepLease(page.toolTimeoutMs);
        this.outage.answered();
      } catch (err) {
        if (this.outage.failed(failureOf(err), asked, Date.now())) this.safely(() => this.callbacks.onBackupServiceDied());
        await this.pause(500);
        continue;
      }
      const { events } = page;
      for (const ev of events) {
        if (this.stopped) break;
        if (ev.seq > this.delivered) await this.deliver(ev);
      }
      await this.ack(page.ackNow === true);
      if (events.length > 0) idle = IDLE_POLL_MS;
      else {
        await this.pause(idle);
        idle = Math.min(this.expecting() ? BUSY_POLL_MAX_MS : IDLE_POLL_MAX_MS, Math.round(idle * 1.5));
      }
    }
    clearInterval(this.heartbeat?.timer);
    await this.ack(true);
  }

  /**
   * Renews the tool lease at least every third of `timeoutMs` (checked twice
   * that often, so a late tick still lands within half the timeout), apart
   * from the loop: a callback or an fd wait that holds the loop up does not
   * make the tool look gone. Only what was acknowledged already is repeated.
   */
  private keepLease(timeoutMs: number): void {
    const everyMs = Math.max(100, Math.floor(timeoutMs / 3));
    if (this.stopped || this.heartbeat?.everyMs === everyMs) return;
    clearInterval(this.heartbeat?.timer);
    const tick = () => {
      if (this.acksHeld || Date.now() - this.lastAckAt < everyMs) return;
      this.lastAckAt = Date.now();
      this.handle.signal(ackSignal, this.acked).catch(() => {
        // An outage: the next tick tries again.
        this.lastAckAt = 0;
      });
    };
    this.heartbeat = { everyMs, timer: setInterval(tick, Math.max(50, Math.floor(everyMs / 2))) };
    // The tool's own work keeps its process alive, not its lease.
    this.heartbeat.timer.unref();
    tick();
  }

  private async ack(now: boolean, upTo = this.delivered): Promise<void> {
    if (upTo <= this.acked || this.acksHeld) return;
    if (!now && upTo - this.acked < ACK_PENDING_MAX && Date.now() - (this.unackedSince ?? Date.now()) < ACK_AFTER_MS) return;
    try {
      await this.handle.signal(ackSignal, upTo);
      this.acked = upTo;
      this.lastAckAt = Date.now();
      // Delivered meanwhile, or past `upTo` (the fd cap's wait acknowledges what came before its file): wait anew.
      this.unackedSince = this.delivered > this.acked ? this.lastAckAt : undefined;
    } catch {
      // The next round acknowledges again; the workflow keeps the events until then.
    }
  }

  /** A bundle the tool appended has not ended: events are due. */
  private expecting(): boolean {
    for (const view of this.bundles.values()) if (view !== 'ended') return true;
    return false;
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async deliver(ev: SessionEvent): Promise<void> {
    this.delivered = ev.seq;
    this.unackedSince ??= Date.now();
    try {
      await this.dispatch(ev);
    } finally {
      this.cursor?.save(ev.seq);
    }
  }

  private async dispatch(ev: SessionEvent): Promise<void> {
    const cb = this.callbacks;
    const err = (e?: { code: number; message: string }, data?: string) => (e ? new BusinessError<string | void>(e.code, e.message, data) : undefined);
    switch (ev.type) {
      case 'bundleBegin':
        this.bundles.set(ev.bundleName, ev.error ? 'ended' : 'running');
        if (!ev.error) this.safely(() => this.options.onBundleBeginning?.(ev.bundleName));
        this.safely(() => cb.onBundleBegin(err(ev.error, ev.bundleName), ev.bundleName));
        if (!ev.error) this.safely(() => this.options.onBundleBegun?.(ev.bundleName));
        return;
      case 'fileReady': {
        const file = { bundleName: ev.bundleName, uri: ev.uri, fd: -1, ...(ev.readyAt !== undefined ? { readyAt: ev.readyAt } : {}) };
        // Its delivery has ended and the tool was told why: the rest of the bundle is not handed over.
        if (this.deliveryStopped.has(ev.bundleName) || this.cancelled.has(ev.bundleName)) return;
        if (ev.error) return this.safely(() => cb.onFileReady(new BusinessError(ev.error!.code, ev.error!.message), file));
        // Incremental: every file comes with an fd of the bundle's new full manifest (the tool closes both).
        const needed = ev.manifestPath ? 2 : 1;
        if (!(await this.roomFor(needed, ev.seq))) {
          const { maxOpenFds, fdWaitMs } = this.options;
          return this.stopDelivery(
            ev,
            errorInfo(
              ErrorCode.OUT_OF_MEMORY,
              `too many open files: the tool has not closed ${this.fds.outstanding()} of the fds this session handed over (cap ${maxOpenFds}) and closed none within ${fdWaitMs} ms; ${ev.uri} and the rest of ${ev.bundleName} are not delivered`,
            ),
          );
        }
        let fd: number;
        let manifestFd: number | undefined;
        try {
          // A raw fd, not a FileHandle: the tool owns it and closes it (a FileHandle would be closed on GC).
          fd = await openFd(ev.path, ev.writable ? 'r+' : 'r');
          this.fds.track(fd);
        } catch (e) {
          const code = codeForSystemError(e);
          return this.stopDelivery(ev, errorInfo(code === ErrorCode.UNKNOWN ? ErrorCode.IO_ERROR : code, `cannot open ${ev.uri}: ${(e as Error).message}`));
        }
        if (ev.manifestPath) {
          manifestFd = await openFd(ev.manifestPath, 'r').catch(() => -1);
          if (manifestFd >= 0) this.fds.track(manifestFd);
        }
        const got = this.got.get(ev.bundleName) ?? { files: 0, bytes: 0 };
        this.got.set(ev.bundleName, { files: got.files + 1, bytes: got.bytes + Math.max(0, ev.size) });
        return this.safely(() => cb.onFileReady(undefined, { ...file, fd, ...(manifestFd !== undefined ? { manifestFd } : {}) }));
      }
      case 'process':
        return this.safely(() => cb.onProcess?.(ev.bundleName, ev.process));
      case 'resultReport': {
        const stopped = this.deliveryStopped.get(ev.bundleName);
        const result =
          stopped && !failedOnItsOwn(ev.result)
            ? JSON.stringify({ resultInfo: { errorCode: stopped.code, errorInfo: stopped.message, type: 'ErrorInfo' } })
            : ev.result;
        return this.safely(() => cb.onResultReport?.(ev.bundleName, result));
      }
      case 'bundleEnd': {
        this.bundles.set(ev.bundleName, 'ended');
        // A bundle whose delivery stopped ends with why, unless it failed on its own (a cancel may be the session stopping it for that).
        const stopped = this.deliveryStopped.get(ev.bundleName);
        const end = stopped && (!ev.error || ev.cancelled) ? stopped : ev.error;
        return this.safely(() => cb.onBundleEnd(err(end, ev.bundleName), ev.bundleName));
      }
      case 'allBundlesEnd':
        return this.safely(() => cb.onAllBundlesEnd(ev.error ? new BusinessError(ev.error.code, ev.error.message) : undefined));
      case 'sizeReport':
        return this.safely(() => cb.onBackupSizeReport?.(ev.report));
    }
  }

  /**
   * Waits, at the cap, for the tool to close fds: no events are pulled or
   * acknowledged meanwhile (those delivered before `seq` are acknowledged
   * first). False if none was closed in time.
   */
  private async roomFor(needed: number, seq: number): Promise<boolean> {
    const { maxOpenFds, fdWaitMs } = this.options;
    if (this.fds.outstanding() + needed <= Math.max(maxOpenFds, needed)) return true;
    await this.ack(true, seq - 1);
    return this.fds.roomFor(needed, maxOpenFds, fdWaitMs);
  }

  /** The tool cancelled the bundle: nothing more of it is handed over, even what was ready before the cancel reached the worker. */
  cancelledByTool(bundleName: string): void {
    this.cancelled.add(bundleName);
  }

  /**
   * The tool cannot be given this file: it is told so, and (while the session
   * runs) the bundle's delivery ends here. The trailing events of a released
   * session belong to bundles that have ended already: only the file is refused.
   */
  private stopDelivery(ev: SessionEvent & { type: 'fileReady' }, info: ErrorInfo): void {
    this.safely(() => this.callbacks.onFileReady(new BusinessError(info.code, info.message), { bundleName: ev.bundleName, uri: ev.uri, fd: -1 }));
    if (this.stopped) return;
    this.deliveryStopped.set(ev.bundleName, info);
    const got = this.got.get(ev.bundleName) ?? { files: 0, bytes: 0 };
    this.safely(() => this.options.onDeliveryStopped?.(ev.bundleName, info, got));
  }

  /** A tool's callback that throws must not stop the stream. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      process.emitWarning(`ohbackup: a GeneralCallbacks handler threw: ${(e as Error)?.stack ?? e}`);
    }
  }
}

/** An onResultReport payload that reports the bundle's own failure (a cancel aside: that may be the session stopping it). */
function failedOnItsOwn(result: string): boolean {
  try {
    const info = (JSON.parse(result) as { resultInfo?: { type?: unknown; errorCode?: unknown } } | null)?.resultInfo;
    return info?.type === 'ErrorInfo' && info.errorCode !== ErrorCode.TASK_FAILED;
  } catch {
    return false;
  }
}
