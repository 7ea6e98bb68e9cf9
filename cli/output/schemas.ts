/**
 * The published shapes of `--json` output (docs/cli.md, "JSON output",
 * schemaVersion 1), one zod schema per command, and the mappers that give a
 * command's result that shape. Every line has `schemaVersion` and
 * `messageType`; a command's last line is its `summary` (or an `error`).
 * A command added later: its schema in COMMAND_SCHEMAS, and one line in the
 * registry test (test/integration/jsonContract.test.ts).
 */
import { z } from 'zod';
import type { BundleOutcome } from '../../common/session.js';
import type { ScheduledBackupSummary } from '../../common/scheduledBackup.js';
import type { ScheduleListing, ScheduleView, ScheduledRun, TriggerResult } from '../../client/schedules.js';
import type { BundleCounts } from '../../client/sets/counts.js';
import { SCHEMA_VERSION } from './json.js';

const Line = { schemaVersion: z.literal(SCHEMA_VERSION) };
const Summary = (command: string, shape: z.ZodRawShape) =>
  z.strictObject({ ...Line, messageType: z.literal('summary'), command: z.literal(command), ...shape });

const n = z.number().int().nonnegative();
const ErrorInfoSchema = z.strictObject({ code: z.number().int(), message: z.string() });
const State = z.enum(['pending', 'running', 'done', 'failed', 'cancelled', 'notStarted']);

export const IncrementSchema = z.strictObject({ new: n, changed: n, deleted: n, touched: n, unmodified: n });

/** One bundle, in every command: what it holds (entries, data bytes) beside the set files handed over. */
export const BundleSchema = z.strictObject({
  bundleName: z.string(),
  state: State,
  error: ErrorInfoSchema.nullable(),
  /** Set files (tar slices, big files, the index) handed over or written, and their bytes. */
  setFiles: n,
  setBytes: n,
  /** Files and folders the bundle's index holds, and their data bytes; null where not known (e.g. a failed bundle). */
  entries: n.nullable(),
  dataBytes: n.nullable(),
  /** An increment's new / changed / deleted / touched / unmodified files; null for a full backup. */
  increment: IncrementSchema.nullable(),
});
export type JsonBundle = z.infer<typeof BundleSchema>;

export function jsonBundle(
  b: BundleOutcome,
  counts: (Pick<BundleCounts, 'entries' | 'dataBytes'> & { increment?: BundleCounts['increment'] }) | null,
): JsonBundle {
  return {
    bundleName: b.bundleName,
    state: b.state,
    error: b.error ?? null,
    setFiles: b.files,
    setBytes: b.bytes,
    entries: counts?.entries ?? null,
    dataBytes: counts?.dataBytes ?? null,
    increment: counts?.increment ?? null,
  };
}

export const TotalsSchema = z.strictObject({
  entries: n.nullable(),
  dataBytes: n.nullable(),
  setFiles: n,
  setBytes: n,
  elapsedMs: n,
  /** Set bytes per second over the run. */
  bytesPerSecond: n,
});

export function jsonTotals(
  bundles: BundleOutcome[],
  counts: Array<{ entries: number; dataBytes: number } | null>,
  elapsedMs: number,
): z.infer<typeof TotalsSchema> {
  const known = counts.filter((c) => c !== null);
  const setBytes = bundles.reduce((s, b) => s + b.bytes, 0);
  return {
    entries: known.length ? known.reduce((s, c) => s + c.entries, 0) : null,
    dataBytes: known.length ? known.reduce((s, c) => s + c.dataBytes, 0) : null,
    setFiles: bundles.reduce((s, b) => s + b.files, 0),
    setBytes,
    elapsedMs,
    bytesPerSecond: elapsedMs > 0 ? Math.round((setBytes * 1000) / elapsedMs) : 0,
  };
}

const Outcome = z.enum(['done', 'partial', 'failed', 'interrupted']);

export const StatusLineSchema = z.strictObject({
  ...Line,
  messageType: z.literal('status'),
  command: z.string(),
  percentDone: z.number().min(0).max(1).nullable(),
  bytesDone: n,
  totalBytes: n.nullable(),
  filesDone: n,
  totalFiles: n.nullable(),
  secondsRemaining: n.nullable(),
  bundlesDone: n,
  totalBundles: n,
});

export const ErrorLineSchema = z.strictObject({
  ...Line,
  messageType: z.literal('error'),
  error: z.strictObject({ code: z.union([z.number().int(), z.string()]), message: z.string() }),
  exitCode: z.number().int().positive(),
});

const RestoredSetSchema = z.strictObject({
  from: z.string(),
  sessionId: z.string(),
  uiUrl: z.string(),
  bundles: z.array(BundleSchema),
  error: ErrorInfoSchema.nullable(),
});

const ScheduleRequestSchema = z.strictObject({ dest: z.string(), bundles: z.array(z.string()).nullable(), incremental: z.boolean(), rate: n.nullable() });
const ScheduledSummarySchema = z.strictObject({
  set: z.string(),
  sessionId: z.string(),
  uiUrl: z.string(),
  kind: z.enum(['backup', 'incremental']),
  base: z.string().nullable(),
  bundles: z.array(BundleSchema),
  setFiles: n,
  setBytes: n,
  outcome: z.enum(['done', 'partial', 'failed']),
  error: ErrorInfoSchema.nullable(),
});
const ScheduledRunSchema = z.strictObject({
  workflowId: z.string(),
  runId: z.string(),
  scheduledAt: z.string(),
  takenAt: z.string(),
  status: z.string(),
  uiUrl: z.string(),
  summary: ScheduledSummarySchema.nullable(),
  error: z.string().nullable(),
});
const ScheduleViewShape = {
  scheduleId: z.string(),
  when: z.string(),
  timezone: z.string().nullable(),
  paused: z.boolean(),
  note: z.string().nullable(),
  request: ScheduleRequestSchema.nullable(),
  taskQueue: z.string().nullable(),
  overlap: z.string(),
  nextRuns: z.array(z.string()),
  recentRuns: z.array(ScheduledRunSchema),
  running: z.array(z.string()),
  actionsTaken: n,
  skippedOverlap: n,
  createdAt: z.string(),
  uiUrl: z.string(),
};

const schedule = (v: ScheduleView) => ({
  ...v,
  timezone: v.timezone ?? null,
  note: v.note ?? null,
  request: v.request ? jsonRequest(v.request) : null,
  taskQueue: v.taskQueue ?? null,
  recentRuns: v.recentRuns.map(jsonRun),
});
function jsonRequest(r: NonNullable<ScheduleView['request']>) {
  return { dest: r.dest, bundles: r.bundles ?? null, incremental: r.incremental, rate: r.rate ?? null };
}
export function jsonScheduledSummary(s: ScheduledBackupSummary) {
  return {
    set: s.set,
    sessionId: s.sessionId,
    uiUrl: s.uiUrl,
    kind: s.kind,
    base: s.base ?? null,
    bundles: s.bundles.map((b) => jsonBundle(b, null)),
    setFiles: s.files,
    setBytes: s.bytes,
    outcome: s.outcome,
    error: s.error ?? null,
  };
}
export function jsonRun(r: ScheduledRun) {
  return { ...r, summary: r.summary ? jsonScheduledSummary(r.summary) : null, error: r.error ?? null };
}
export const jsonSchedule = { view: schedule };
export function jsonScheduleListing(l: ScheduleListing) {
  return {
    scheduleId: l.scheduleId,
    when: l.when,
    paused: l.paused,
    note: l.note ?? null,
    request: l.request ? jsonRequest(l.request) : null,
    nextRun: l.nextRun ?? null,
    lastRun: l.lastRun ? jsonRun(l.lastRun) : null,
  };
}
export function jsonTrigger(r: TriggerResult) {
  return r.skipped
    ? { scheduleId: r.scheduleId, skipped: true, reason: r.reason, run: null }
    : { scheduleId: r.scheduleId, skipped: false, reason: null, run: jsonRun(r.run) };
}

const Steered = { sessionId: z.string(), bundleName: z.string(), message: z.string() };
const SessionBundleSchema = BundleSchema.extend({ sendRate: n.nullable() });

/** The summary line of every command, by the `command` it names. */
export const COMMAND_SCHEMAS = {
  backup: Summary('backup', {
    sessionId: z.string(),
    uiUrl: z.string(),
    out: z.string(),
    kind: z.enum(['backup', 'incremental']),
    base: z.string().nullable(),
    bundles: z.array(BundleSchema),
    totals: TotalsSchema,
    error: ErrorInfoSchema.nullable(),
    interrupted: z.boolean(),
    endedElsewhere: z.string().nullable(),
    outcome: Outcome,
    elapsedMs: n,
  }),
  restore: Summary('restore', {
    sessionId: z.string(),
    uiUrl: z.string(),
    from: z.string(),
    to: z.string().nullable(),
    device: z.string().nullable(),
    taskQueue: z.string(),
    map: z.record(z.string(), z.string()),
    bundles: z.array(BundleSchema),
    sets: z.array(RestoredSetSchema),
    totals: TotalsSchema,
    error: ErrorInfoSchema.nullable(),
    interrupted: z.boolean(),
    endedElsewhere: z.string().nullable(),
    incomplete: z.string().nullable(),
    outcome: Outcome,
    elapsedMs: n,
  }),
  'restore --dry-run': Summary('restore --dry-run', {
    from: z.string(),
    to: z.string().nullable(),
    bundles: z.array(
      z.strictObject({ bundleName: z.string(), target: z.string(), sets: z.array(z.string()), entries: n, dataBytes: n, replacesData: z.boolean() }),
    ),
    incomplete: z.string().nullable(),
    outcome: z.literal('done'),
    elapsedMs: n,
  }),
  sessions: Summary('sessions', {
    sessions: z.array(
      z.strictObject({ sessionId: z.string(), kind: z.string().nullable(), status: z.string(), startTime: z.string(), bundles: z.array(z.string()) }),
    ),
  }),
  status: Summary('status', {
    sessionId: z.string(),
    status: z.string(),
    startTime: z.string().nullable(),
    closeTime: z.string().nullable(),
    uiUrl: z.string(),
    bundles: z.array(SessionBundleSchema),
  }),
  cancel: Summary('cancel', { ...Steered, code: z.number().int(), cancelled: z.boolean() }),
  timer: Summary('timer', { ...Steered, ok: z.boolean(), timeoutMs: n, deadline: z.string().nullable() }),
  rate: Summary('rate', { ...Steered, ok: z.boolean(), sendRate: n, paused: z.boolean() }),
  release: Summary('release', {
    sessionId: z.string(),
    kind: z.enum(['backup', 'restore', 'incremental']),
    endedBy: z.string().nullable(),
    bundles: z.array(BundleSchema),
    trailingEvents: n,
  }),
  'sample-device': Summary('sample-device', {
    dir: z.string(),
    bundles: z.array(z.strictObject({ bundleName: z.string(), files: n, bytes: n, backupable: z.boolean(), excludedFiles: n, excludedBytes: n })),
  }),
  'schedule create': Summary('schedule create', ScheduleViewShape),
  'schedule describe': Summary('schedule describe', ScheduleViewShape),
  'schedule pause': Summary('schedule pause', ScheduleViewShape),
  'schedule unpause': Summary('schedule unpause', ScheduleViewShape),
  'schedule list': Summary('schedule list', {
    schedules: z.array(
      z.strictObject({
        scheduleId: z.string(),
        when: z.string(),
        paused: z.boolean(),
        note: z.string().nullable(),
        request: ScheduleRequestSchema.nullable(),
        nextRun: z.string().nullable(),
        lastRun: ScheduledRunSchema.nullable(),
      }),
    ),
  }),
  'schedule trigger': Summary('schedule trigger', {
    scheduleId: z.string(),
    skipped: z.boolean(),
    reason: z.string().nullable(),
    run: ScheduledRunSchema.nullable(),
  }),
  'schedule delete': Summary('schedule delete', { scheduleId: z.string(), deleted: z.literal(true) }),
} as const;

export type JsonCommand = keyof typeof COMMAND_SCHEMAS;

/**
 * Checks a command's whole `--json` stdout: JSON Lines, `status` lines then
 * one last line, the `summary` of `command` or an `error`. Returns the lines;
 * throws saying what does not fit.
 */
export function checkJsonOutput(command: JsonCommand, stdout: string): Array<Record<string, unknown>> {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (!lines.length) throw new Error(`${command}: no JSON output`);
  const parsed = lines.map((l, i) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      throw new Error(`${command}: line ${i + 1} is not JSON: ${l.slice(0, 200)}`);
    }
  });
  parsed.forEach((p, i) => {
    const last = i === parsed.length - 1;
    const schema = !last ? StatusLineSchema : p.messageType === 'error' ? ErrorLineSchema : COMMAND_SCHEMAS[command];
    const r = schema.safeParse(p);
    if (!r.success) throw new Error(`${command}: line ${i + 1} does not fit its schema: ${z.prettifyError(r.error)}\n${lines[i]}`);
  });
  return parsed;
}
