/**
 * What a session knows, and its rules: one slot per appended bundle, the order
 * in which reported events are accepted (a bundle's begin before its files,
 * nothing after its end, a file index once), which bundle starts next, the
 * checks of the tool's requests, and the outcomes. No Temporal calls, so the
 * rules are unit-tested without a server (test/unit/sessionState.test.ts);
 * workflow.ts wires them to handlers and child workflows.
 */
import type { AppendRequest, FileMetaInput } from '../../common/messages.js';
import { ErrorCode, errorInfo, type ErrorInfo } from '../../common/errors.js';
import {
  ACKNOWLEDGED_URIS_NAMED,
  type AcknowledgedFiles,
  type BundleOutcome,
  type BundleRequest,
  type BundleState,
  type EventBody,
  type EventsPage,
  type SessionAbandoned,
  type SessionEndedBy,
  type SessionKind,
} from '../../common/session.js';
import { codedFailure, isPlainUri } from '../../common/rules.js';
import { formatBytes, formatDuration } from '../../common/format.js';
import { EventLog, type EventLogState } from './eventLog.js';

export interface BundleSlot extends BundleOutcome {
  request: BundleRequest;
  /** Next file index the session accepts for this bundle (repeats after a retry are dropped). */
  nextFileIndex: number;
  /** onBundleBegin (without error) was emitted: file events may follow. */
  begun: boolean;
  /** It waits at send rate 0 (the last process report said so, no file since). */
  paused?: boolean;
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
  /** What the tool has acknowledged of this bundle (counted as the acknowledged events are dropped). */
  acknowledged?: Omit<AcknowledgedFiles, 'bundleName'>;
  /** When it started running and when its end was accepted (epoch ms, workflow time): its duration. */
  startedAt?: number;
  endedAt?: number;
}

/** What continue-as-new carries: the session's whole state, as plain data. */
export interface CarriedState extends EventLogState {
  appendCalls: number;
  nextOrder: number;
  slots: BundleSlot[];
  allEndSentFor: number;
  released: boolean;
}

export type AppendedBundle = AppendRequest['bundles'][number];
/** What createRestoreTarget answers. */
export type RestoreTarget = { ok: true; path: string } | { ok: false; error: ErrorInfo };
export interface DeliveryStop {
  bundleName: string;
  error: ErrorInfo;
  files: number;
  bytes: number;
}

/** The device bundle an appended bundle works on (a restore may map it to another). */
export const deviceBundleOf = (b: AppendedBundle | BundleRequest): string => b.targetBundle ?? b.bundleName;

const isActive = (slot: BundleSlot) => slot.state === 'pending' || slot.state === 'running';
const hasEnded = (slot: BundleSlot) => slot.state === 'done' || slot.state === 'failed' || slot.state === 'cancelled';

export class SessionState {
  readonly log: EventLog;
  readonly slots: BundleSlot[];
  private appendCalls: number;
  private nextOrder: number;
  private allEndSentFor: number;
  private releasedFlag: boolean;
  /** Set at release (not carried: a released session does not continue as new). */
  private endedByWhom?: SessionEndedBy;
  private abandonedAs?: { reason: string; at: string };
  /** Called once per bundle, when its end is accepted (metrics and logs; the state itself stays pure). */
  onEnded?: (slot: BundleSlot) => void;
  // Derived from the slots (rebuilt, not carried), so a workflow task's work does not grow with the session's
  // bundles: the checks after every activation and each event's slot look-up are O(1), not scans of every slot.
  private readonly byName = new Map<string, BundleSlot>();
  private readonly counts: Record<BundleState, number> = { pending: 0, running: 0, done: 0, failed: 0, cancelled: 0, notStarted: 0 };
  /** Pending slots in start order (priority, then append order); undefined: to be sorted again. */
  private queue?: BundleSlot[];
  private queueHead = 0;
  /** Each slot's line of the current details, redrawn only when the slot changed. */
  private readonly lines: string[] = [];
  private readonly lineOf = new Map<BundleSlot, number>();
  private readonly changed = new Set<BundleSlot>();
  private linesText = '';

  constructor(
    readonly kind: SessionKind,
    carried?: CarriedState,
  ) {
    this.log = new EventLog(carried);
    this.slots = carried?.slots ?? [];
    this.appendCalls = carried?.appendCalls ?? 0;
    this.nextOrder = carried?.nextOrder ?? 0;
    this.allEndSentFor = carried?.allEndSentFor ?? 0;
    this.releasedFlag = carried?.released ?? false;
    for (const slot of this.slots) this.index(slot);
  }

  private index(slot: BundleSlot): void {
    this.byName.set(slot.bundleName, slot);
    this.counts[slot.state] += 1;
    this.lineOf.set(slot, this.lines.push('') - 1);
    this.changed.add(slot);
  }

  /** Every change of a slot's state goes through here (the counts follow). */
  private setState(slot: BundleSlot, state: BundleState): void {
    this.counts[slot.state] -= 1;
    this.counts[state] += 1;
    slot.state = state;
    this.changed.add(slot);
  }

  get released(): boolean {
    return this.releasedFlag;
  }

  slot(bundleName: string): BundleSlot | undefined {
    return this.byName.get(bundleName);
  }

  // ---- appendBundles and release ----

  checkAppend(): void {
    if (this.releasedFlag) throw codedFailure(ErrorCode.NOT_PERMITTED, 'the session was released');
    if (this.kind !== 'incremental' && this.appendCalls > 0) throw codedFailure(ErrorCode.NOT_PERMITTED, 'appendBundles may be called once per session');
  }

  /** Counts an appendBundles call at once (a second one arriving while this one claims is refused); answers its number. */
  countAppend(): number {
    return (this.appendCalls += 1);
  }

  /** The device bundles of `bundles` that need a claim: not rejected, not in this session already. */
  toClaim(bundles: readonly AppendedBundle[]): string[] {
    return bundles.filter((b) => !b.rejected && !this.slot(b.bundleName)).map(deviceBundleOf);
  }

  /** Adds a slot per new bundle (once per session); `held`: device bundle → the 13500013 another session's claim gives it. */
  add(bundles: readonly AppendedBundle[], held: ReadonlyMap<string, ErrorInfo>): void {
    for (const b of bundles) {
      if (this.slot(b.bundleName)) continue;
      const conflict = b.rejected ? undefined : held.get(deviceBundleOf(b));
      this.queue = undefined;
      const slot: BundleSlot = {
        bundleName: b.bundleName,
        state: this.releasedFlag ? 'notStarted' : 'pending',
        files: 0,
        bytes: 0,
        nextFileIndex: 0,
        begun: false,
        childStarted: false,
        published: false,
        deferred: [],
        requested: [],
        request: { ...b, ...(conflict ? { rejected: conflict } : {}), priority: b.priority ?? 0, order: this.nextOrder++ },
      };
      this.slots.push(slot);
      this.index(slot);
    }
  }

  checkRelease(): void {
    if (this.releasedFlag) throw codedFailure(ErrorCode.NOT_PERMITTED, 'the session was released already');
  }

  release(by: SessionEndedBy = 'tool'): void {
    this.releasedFlag = true;
    this.endedByWhom ??= by;
  }

  get endedBy(): SessionEndedBy | undefined {
    return this.endedByWhom;
  }

  /**
   * Its tool fell silent past the tool timeout: the session releases itself.
   * Running bundles end with 13500010 (their child is cancelled; nothing more
   * of them is accepted, as when a delivery stops).
   */
  abandon(reason: string, at: string): void {
    this.release('abandoned');
    this.abandonedAs = { reason, at };
    const error = errorInfo(ErrorCode.TASK_FAILED, `abandoned by its tool: ${reason}`);
    for (const slot of this.running()) slot.deliveryError ??= error;
  }

  /**
   * After release: what never started begins and ends with 13500011 (or the
   * reason it was refused at append), so every appended bundle ends once.
   */
  markNotStarted(): void {
    const why = this.abandonedAs ? `the session was abandoned by its tool before it started` : 'the session was released before it started';
    for (const slot of this.slots) {
      if (slot.state !== 'pending') continue;
      const error = slot.request.rejected ?? errorInfo(ErrorCode.CANCEL_NOT_STARTED, why);
      this.log.append({ type: 'bundleBegin', bundleName: slot.bundleName, error });
      this.log.append({ type: 'bundleEnd', bundleName: slot.bundleName, error });
      this.setState(slot, 'notStarted');
      slot.error = error;
      this.onEnded?.(slot);
    }
  }

  /**
   * Abandoned, once its bundles have ended: a bundle counts only what its tool
   * acknowledged, and one whose end the tool never acknowledged failed with
   * why (the tool may not have kept the rest). Answers the result's account.
   */
  settleAbandoned(): SessionAbandoned | undefined {
    if (!this.abandonedAs) return undefined;
    const error = errorInfo(ErrorCode.TASK_FAILED, `abandoned by its tool: ${this.abandonedAs.reason}`);
    const acknowledgedFiles = this.slots.map((slot) => {
      const acked = slot.acknowledged ?? { files: 0, bytes: 0, uris: [], ended: false };
      slot.files = acked.files;
      slot.bytes = acked.bytes;
      this.changed.add(slot);
      if (!acked.ended && slot.state === 'done') {
        this.setState(slot, 'failed');
        slot.error = error;
      }
      return { bundleName: slot.bundleName, ...acked };
    });
    return { ...this.abandonedAs, acknowledgedFiles };
  }

  /** The tool acknowledged every event up to `seq`: what it got is counted per bundle. */
  ack(seq: number): void {
    for (const event of this.log.ack(seq)) {
      if (event.type !== 'fileReady' && event.type !== 'bundleEnd') continue;
      const slot = this.slot(event.bundleName);
      if (!slot) continue;
      const acked = (slot.acknowledged ??= { files: 0, bytes: 0, uris: [], ended: false });
      if (event.type === 'bundleEnd') acked.ended = true;
      else if (!event.error) {
        acked.files += 1;
        acked.bytes += Math.max(0, event.size);
        if (acked.uris.length < ACKNOWLEDGED_URIS_NAMED) acked.uris.push(event.uri);
      }
    }
  }

  // ---- requests about one bundle ----

  /** cancelBundle: the reference code refusing it, or undefined when the bundle runs and its child is to be cancelled. */
  cancelRefusal(bundleName: string): number | undefined {
    const slot = this.slot(bundleName);
    if (!slot) return ErrorCode.CANCEL_NO_TASK;
    if (slot.state === 'pending') return ErrorCode.CANCEL_NOT_STARTED;
    if (slot.state !== 'running') return ErrorCode.CANCEL_NO_TASK;
    return undefined;
  }

  checkSizeScan(): void {
    if (this.releasedFlag) throw codedFailure(ErrorCode.NOT_PERMITTED, 'the session was released');
    if (this.kind === 'restore') throw codedFailure(ErrorCode.NOT_PERMITTED, 'getBackupDataSize belongs to backup sessions');
  }

  /** The slot a restore request (getFileHandle, publishFile) is about; throws when the request is not allowed now. */
  restoreSlot(meta: FileMetaInput, what: string): BundleSlot {
    if (this.releasedFlag) throw codedFailure(ErrorCode.NOT_PERMITTED, 'the session was released');
    if (this.kind !== 'restore') throw codedFailure(ErrorCode.NOT_PERMITTED, `${what} belongs to restore sessions`);
    const slot = this.slot(meta.bundleName);
    if (!slot) throw codedFailure(ErrorCode.INVALID_ARGUMENT, `${meta.bundleName} is not in this session`);
    if (!isActive(slot)) throw codedFailure(ErrorCode.NOT_PERMITTED, `${meta.bundleName} has ended`);
    return slot;
  }

  /** getFileHandle: a plain uri, each at most once per bundle. */
  checkTargetRequest(meta: FileMetaInput): void {
    const slot = this.restoreSlot(meta, 'getFileHandle');
    if (!isPlainUri(meta.uri)) throw badUri(meta.uri);
    if (slot.requested.includes(meta.uri)) throw codedFailure(ErrorCode.INVALID_ARGUMENT, `a target for ${meta.uri} was asked for already`);
  }

  /** publishFile: uri '' (the whole bundle) or a plain uri. */
  checkPublish(meta: FileMetaInput): void {
    this.restoreSlot(meta, 'publishFile');
    if (meta.uri !== '' && !isPlainUri(meta.uri)) throw badUri(meta.uri);
  }

  /** getFileHandle accepted: the uri is now asked for; answers the bundle's slot. */
  requestTarget(meta: FileMetaInput): BundleSlot {
    const slot = this.restoreSlot(meta, 'getFileHandle');
    slot.requested.push(meta.uri);
    return slot;
  }

  /** A restore target was made (or not): its onFileReady now, or right after the bundle's begin. */
  targetMade(slot: BundleSlot, uri: string, target: RestoreTarget): void {
    const event: EventBody = target.ok
      ? { type: 'fileReady', bundleName: slot.bundleName, fileIndex: 0, uri, size: 0, path: target.path, writable: true }
      : { type: 'fileReady', bundleName: slot.bundleName, fileIndex: 0, uri, size: 0, path: '', error: target.error };
    if (slot.begun) this.accept(withNextIndex(slot, event));
    else slot.deferred.push(event);
  }

  /** Restore: the bundle runs, its child has begun, and it waits for the tool to publish it. */
  waitsForPublish(bundleName: string): boolean {
    const s = this.slot(bundleName);
    return s !== undefined && s.state === 'running' && s.childStarted && s.begun && !s.published;
  }

  /** publishFile: marks the bundle published; answers whether its running child must be told now. */
  publish(meta: FileMetaInput): boolean {
    const slot = this.restoreSlot(meta, 'publishFile');
    // A single file's publish needs nothing: the bundle applies its files once the whole bundle is published.
    if (meta.uri !== '' || slot.published) return false;
    slot.published = true;
    return slot.childStarted;
  }

  /** The tool stopped a bundle's delivery: it ends with `error`. Answers whether its running child must be cancelled. */
  deliveryStopped({ bundleName, error, files, bytes }: DeliveryStop): boolean {
    const slot = this.slot(bundleName);
    if (!slot || slot.deliveryError) return false;
    slot.deliveryError = error;
    slot.files = files;
    slot.bytes = bytes;
    this.changed.add(slot);
    // Running: nothing more of it will reach the tool; its end then carries `error`.
    if (slot.state === 'running') return slot.childStarted;
    if (slot.state === 'done' || slot.state === 'cancelled') {
      // Ended already (a bundle's own failure stays its outcome).
      this.setState(slot, 'failed');
      slot.error = error;
    }
    return false;
  }

  // ---- the event stream ----

  /** Applies one reported event to the bundle's state, dropping repeats and anything after its end. */
  accept(body: EventBody): void {
    if (body.type === 'allBundlesEnd' || body.type === 'sizeReport') return void this.log.append(body);
    const slot = this.slot(body.bundleName);
    if (!slot) return;
    this.changed.add(slot);
    if (body.type !== 'bundleBegin' && slot.state === 'running' && !slot.begun && !slot.error) {
      (slot.early ??= []).push(body);
      return;
    }
    const ended = hasEnded(slot);
    switch (body.type) {
      case 'bundleBegin':
        if (!isActive(slot) || slot.begun) return;
        if (body.error) slot.error = body.error;
        else slot.begun = true;
        this.log.append(body);
        // Restore targets the tool asked for before the bundle began follow its onBundleBegin, then what overtook it.
        for (const event of slot.deferred.splice(0)) this.accept(withNextIndex(slot, event));
        for (const event of slot.early?.splice(0) ?? []) this.accept(event);
        return;
      case 'fileReady':
        if (ended || slot.deliveryError || body.fileIndex < slot.nextFileIndex) return;
        slot.nextFileIndex = body.fileIndex + 1;
        slot.paused = false;
        slot.files += 1;
        slot.bytes += body.size;
        break;
      case 'process':
        if (ended) return;
        slot.paused = body.paused === true;
        break;
      case 'resultReport':
        if (ended) return;
        break;
      case 'bundleEnd':
        if (ended) return;
        // The tool did not get all of it: it ends with why, unless it failed on its own (its cancel was the session's doing).
        if (slot.deliveryError && (!body.error || body.cancelled)) body = { ...body, error: slot.deliveryError, cancelled: false };
        this.setState(slot, body.cancelled ? 'cancelled' : body.error ? 'failed' : 'done');
        if (body.error) slot.error = body.error;
        slot.endedAt = Date.now();
        this.log.append(body);
        this.onEnded?.(slot);
        return;
    }
    this.log.append(body);
  }

  /**
   * A bundle's child workflow closed. Its end was reported before it closed
   * (a failed or cancelled child reports, then fails), so this changes
   * nothing, unless the child was ended from outside (terminated, timed out)
   * without reporting: then the bundle ends here with `error`.
   */
  childClosed(bundleName: string, error: ErrorInfo): void {
    const slot = this.slot(bundleName);
    if (!slot || slot.state !== 'running') return;
    if (!slot.begun && !slot.error) this.endRejected(slot, error);
    else this.accept({ type: 'bundleEnd', bundleName, error });
  }

  eventsPage(after: number, max?: number): EventsPage {
    return { ...this.log.page(after, max), released: this.releasedFlag };
  }

  // ---- scheduling ----

  running(): BundleSlot[] {
    return this.slots.filter((b) => b.state === 'running');
  }

  /** Restore: a bundle waits for the bundles of this session it depends on (restoreDeps); one not in the session counts as ended. */
  ready(slot: BundleSlot): boolean {
    return (slot.request.restoreDeps ?? []).every((dep) => {
      const depSlot = this.slot(dep);
      return dep === slot.bundleName || !depSlot || !isActive(depSlot);
    });
  }

  /** The bundle to start next: ready, then highest priority, then first appended. */
  nextPending(): BundleSlot | undefined {
    if (this.counts.pending === 0) return undefined;
    if (!this.queue) {
      this.queue = this.slots.filter((b) => b.state === 'pending').sort((x, y) => y.request.priority - x.request.priority || x.request.order - y.request.order);
      this.queueHead = 0;
    }
    // Slots leave the queue only by starting (or at release): the head skips those, the rest keep their order.
    while (this.queueHead < this.queue.length && this.queue[this.queueHead]!.state !== 'pending') this.queueHead += 1;
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const b = this.queue[i]!;
      if (b.state === 'pending' && this.ready(b)) return b;
    }
    return undefined;
  }

  canStart(maxConcurrent: number): boolean {
    return this.counts.running < maxConcurrent && this.nextPending() !== undefined;
  }

  /** How many bundles run now. */
  get runningCount(): number {
    return this.counts.running;
  }

  /** Marks running, and answers, every bundle that may start now (started together: one workflow task, not one each). */
  takeStartable(maxConcurrent: number): BundleSlot[] {
    const starting: BundleSlot[] = [];
    while (this.counts.running < maxConcurrent) {
      const slot = this.nextPending();
      if (!slot) break;
      this.setState(slot, 'running');
      slot.startedAt = Date.now();
      starting.push(slot);
    }
    return starting;
  }

  /** A bundle known not to run (e.g. absent from the capability file): it begins and ends with the reason. */
  endRejected(slot: BundleSlot, rejected: ErrorInfo): void {
    this.accept({ type: 'bundleBegin', bundleName: slot.bundleName, error: rejected });
    this.accept({ type: 'bundleEnd', bundleName: slot.bundleName, error: rejected });
  }

  allEnded(): boolean {
    return this.slots.length > 0 && this.counts.pending + this.counts.running === 0;
  }

  /** Every bundle appended so far has ended and onAllBundlesEnd was not sent for them (an incremental append may add more). */
  allEndDue(): boolean {
    return this.allEnded() && this.allEndSentFor < this.slots.length;
  }

  announceAllEnded(): void {
    if (!this.allEndDue()) return;
    this.allEndSentFor = this.slots.length;
    this.log.append({ type: 'allBundlesEnd' });
  }

  // ---- what the session tells ----

  outcomes(): BundleOutcome[] {
    return this.slots.map(({ bundleName, state, error, files, bytes }) => ({ bundleName, state, error, files, bytes }));
  }

  /** The UI's current details (Markdown): how the session ended, if it has, then one list item per bundle. */
  details(): string {
    const ended =
      this.endedByWhom === 'abandoned'
        ? [`**abandoned by its tool** (${this.abandonedAs?.reason})`, '']
        : this.endedByWhom === 'another client'
          ? ['**released by another client**', '']
          : [];
    if (this.changed.size > 0) {
      for (const b of this.changed)
        this.lines[this.lineOf.get(b)!] =
          `- \`${b.bundleName}\`: ${b.state === 'running' && b.paused ? 'paused (rate 0)' : b.state}, ${b.files} files, ${formatBytes(b.bytes)}${b.error ? ` (error ${b.error.code})` : ''}`;
      this.changed.clear();
      this.linesText = this.lines.join('\n');
    }
    return [...ended, ...(this.lines.length > 0 ? [this.linesText] : [])].join('\n');
  }

  /**
   * Every bundle's outcome as a Markdown table, with the session's outcome
   * and totals above it: the session's result carries it, for the UI to show
   * once the session has closed (its current details need a live worker).
   */
  summaryMarkdown(outcome: string, origin?: { host: string; user: string; target?: string }): string {
    const done = this.slots.filter((b) => b.state === 'done').length;
    const files = this.slots.reduce((n, b) => n + b.files, 0);
    const bytes = this.slots.reduce((n, b) => n + b.bytes, 0);
    const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
    const rows = this.slots.map((b) => [
      `\`${b.bundleName}\``,
      b.state,
      String(b.files),
      formatBytes(b.bytes),
      b.startedAt !== undefined && b.endedAt !== undefined ? formatDuration(b.endedAt - b.startedAt) : '',
      b.error ? clip(cell(`${b.error.code} ${b.error.message}`), 100) : '',
    ]);
    // Padded: the memo shows it as plain text (monospace), the result and docs render it as Markdown.
    const header = ['Bundle', 'State', 'Files', 'Size', 'Duration', 'Error'];
    const right = [false, false, true, true, true, false];
    // The last column (the error, clipped: the result's bundles hold it whole) is not padded, so short lines stay short.
    const widths = header.map((h, i) => (i === header.length - 1 ? 3 : Math.max(h.length, 3, ...rows.map((r) => r[i]!.length))));
    const pad = (c: string, i: number) => (i === header.length - 1 ? c : right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!));
    const line = (cells: string[]) => `| ${cells.map(pad).join(' | ')} |`;
    const rule = `| ${widths.map((w, i) => (right[i] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
    const lines = [
      `**${outcome}**: ${done} of ${this.slots.length} bundles done, ${files} files, ${formatBytes(bytes)}`,
      ...(origin ? ['', `Started by ${origin.user}@${origin.host}${origin.target ? `; ${cell(origin.target)}` : ''}`] : []),
      '',
      line(header),
      rule,
      ...rows.map(line),
    ];
    return lines.join('\n');
  }

  toCarried(): CarriedState {
    return {
      appendCalls: this.appendCalls,
      nextOrder: this.nextOrder,
      slots: this.slots,
      ...this.log.toCarried(),
      allEndSentFor: this.allEndSentFor,
      released: this.releasedFlag,
    };
  }
}

/** A session-assigned file index, for events the session makes itself (restore targets). */
function withNextIndex(slot: BundleSlot, event: EventBody): EventBody {
  return event.type === 'fileReady' ? { ...event, fileIndex: slot.nextFileIndex } : event;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function badUri(uri: string) {
  return codedFailure(ErrorCode.INVALID_ARGUMENT, `uri "${uri}" may hold only 0-9, a-z, A-Z, "_" and "."`);
}
