/**
 * Turns a session's numbered event stream into GeneralCallbacks calls, in
 * order, each once. It reads the session workflow with a query (no history
 * cost), delivers, then acknowledges what it delivered so the workflow can
 * drop it and a re-attaching tool resumes after it. A query that cannot be
 * answered (no worker serving the session, or no Temporal service) is an
 * outage: `onBackupServiceDied` fires once for it.
 */
import { open, renameSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { BusinessError } from '../common/businessError.js';
import { ErrorCode, errorInfo } from '../common/errors.js';
import type { SessionEvent } from '../common/session.js';
import { ackSignal, eventsQuery } from '../workflows/sessionWorkflow.js';
import type { GeneralCallbacks } from './types.js';

const openFd = promisify(open);

/** Replaces the cursor atomically: a kill mid-write must never leave it empty or short. */
function saveCursor(file: string, seq: number): void {
  writeFileSync(`${file}.tmp`, String(seq));
  renameSync(`${file}.tmp`, file);
}

export type BundleView = 'appended' | 'running' | 'ended';

const IDLE_POLL_MS = 100;
const QUERY_DEADLINE_MS = 5_000;
const ACK_EVERY_MS = 300;
/** Failures shorter than this (e.g. the workflow's first task still running) are not an outage. */
const OUTAGE_AFTER_MS = 2_000;

export class EventPump {
  /** Last event seq delivered to the callbacks. */
  delivered: number;
  /** The tool's own view of each bundle, fed by the events; the synchronous calls answer from it. */
  readonly bundles = new Map<string, BundleView>();
  private acked: number;
  private lastAckAt = 0;
  private stopped = false;
  private wake?: () => void;
  private loop?: Promise<void>;
  private failingSince?: number;
  private inOutage = false;

  constructor(
    private readonly handle: WorkflowHandle,
    private readonly callbacks: GeneralCallbacks,
    startAfter = 0,
    /** Where the last delivered seq is recorded after each callback, so a re-attaching tool skips exactly what it delivered. */
    private readonly cursorFile?: string,
  ) {
    this.delivered = startAfter;
    this.acked = startAfter;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops polling; events after this are delivered only through `deliverAll`. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  /** Delivers events not delivered yet (e.g. a completed session's trailing events). */
  async deliverAll(events: SessionEvent[]): Promise<void> {
    for (const ev of events) if (ev.seq > this.delivered) await this.deliver(ev);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const asked = Date.now();
      let events: SessionEvent[];
      try {
        const page = await this.handle.client.connection.withDeadline(Date.now() + QUERY_DEADLINE_MS, () =>
          this.handle.query(eventsQuery, this.delivered, 500),
        );
        events = page.events;
        this.failingSince = undefined;
        this.inOutage = false;
      } catch (err) {
        this.failingSince ??= asked;
        if (!this.inOutage && (Date.now() - asked >= OUTAGE_AFTER_MS || Date.now() - this.failingSince >= OUTAGE_AFTER_MS)) {
          this.inOutage = true;
          this.safely(() => this.callbacks.onBackupServiceDied());
        }
        await this.pause(500);
        continue;
      }
      for (const ev of events) {
        if (this.stopped) break;
        if (ev.seq > this.delivered) await this.deliver(ev);
      }
      await this.ack(events.length === 0);
      if (events.length === 0) await this.pause(IDLE_POLL_MS);
    }
    await this.ack(true);
  }

  private async ack(now: boolean): Promise<void> {
    if (this.delivered <= this.acked) return;
    if (!now && Date.now() - this.lastAckAt < ACK_EVERY_MS) return;
    try {
      await this.handle.signal(ackSignal, this.delivered);
      this.acked = this.delivered;
      this.lastAckAt = Date.now();
    } catch {
      // The next round acknowledges again; the workflow keeps the events until then.
    }
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
    try {
      await this.dispatch(ev);
    } finally {
      if (this.cursorFile) saveCursor(this.cursorFile, ev.seq);
    }
  }

  private async dispatch(ev: SessionEvent): Promise<void> {
    const cb = this.callbacks;
    const err = (e?: { code: number; message: string }, data?: string) => (e ? new BusinessError<string | void>(e.code, e.message, data) : undefined);
    switch (ev.type) {
      case 'bundleBegin':
        this.bundles.set(ev.bundleName, ev.error ? 'ended' : 'running');
        return this.safely(() => cb.onBundleBegin(err(ev.error, ev.bundleName), ev.bundleName));
      case 'fileReady': {
        const file = { bundleName: ev.bundleName, uri: ev.uri, fd: -1, ...(ev.readyAt !== undefined ? { readyAt: ev.readyAt } : {}) };
        if (ev.error) return this.safely(() => cb.onFileReady(new BusinessError(ev.error!.code, ev.error!.message), file));
        let fd: number;
        try {
          // A raw fd, not a FileHandle: the tool owns it and closes it (a FileHandle would be closed on GC).
          fd = await openFd(ev.path, ev.writable ? 'r+' : 'r');
        } catch (e) {
          const info = errorInfo(ErrorCode.IO_ERROR, `cannot open ${ev.uri}: ${(e as Error).message}`);
          return this.safely(() => cb.onFileReady(new BusinessError(info.code, info.message), file));
        }
        // Incremental: every file comes with an fd of the bundle's new full manifest (the tool closes both).
        const manifestFd = ev.manifestPath ? await openFd(ev.manifestPath, 'r').catch(() => -1) : undefined;
        return this.safely(() => cb.onFileReady(undefined, { ...file, fd, ...(manifestFd !== undefined ? { manifestFd } : {}) }));
      }
      case 'process':
        return this.safely(() => cb.onProcess?.(ev.bundleName, ev.process));
      case 'resultReport':
        return this.safely(() => cb.onResultReport?.(ev.bundleName, ev.result));
      case 'bundleEnd':
        this.bundles.set(ev.bundleName, 'ended');
        return this.safely(() => cb.onBundleEnd(err(ev.error, ev.bundleName), ev.bundleName));
      case 'allBundlesEnd':
        return this.safely(() => cb.onAllBundlesEnd(ev.error ? new BusinessError(ev.error.code, ev.error.message) : undefined));
      case 'sizeReport':
        return this.safely(() => cb.onBackupSizeReport?.(ev.report));
    }
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
