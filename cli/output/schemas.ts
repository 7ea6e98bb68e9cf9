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
import type { SetCheck } from '../../client/sets/verify.js';
import type { DeviceView, FollowedDeviceRun, StartedDeviceRun } from '../../client/runs/deviceRuns.js';
import type { RepositoryBackupResult, RepositoryRestoreResult } from '../../client/runs/repositoryRuns.js';
import type { CheckResult, DiffResult, ForgetResult, SnapshotInfo, StoreSummary } from '../../engine/repository/index.js';
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

/** Where the runs go: `dest` (set folders) or `repository` (snapshots, with `keep` and `fullEvery`); the other is null. */
const ScheduleRequestSchema = z.strictObject({
  dest: z.string().nullable(),
  repository: z.string().nullable(),
  keep: z.strictObject({ keepLast: n.nullable(), keepDaily: n.nullable(), keepWeekly: n.nullable(), keepMonthly: n.nullable() }).nullable(),
  fullEvery: n.nullable(),
  bundleTimeoutMs: n.nullable(),
  bundles: z.array(z.string()).nullable(),
  incremental: z.boolean(),
  rate: n.nullable(),
});
const ScheduledSummarySchema = z.strictObject({
  set: z.string(),
  /** A repository run: the snapshot made, what it added, the keep policy's work; null for a set folder run. */
  repository: z
    .strictObject({
      name: z.string(),
      snapshot: z.string().nullable(),
      baseSnapshot: z.string().nullable(),
      bytesProcessed: n.nullable(),
      dataAdded: n.nullable(),
      forgotten: z.array(z.string()).nullable(),
      pruned: z.boolean().nullable(),
      problem: z.string().nullable(),
    })
    .nullable(),
  sessionId: z.string(),
  uiUrl: z.string(),
  kind: z.enum(['backup', 'incremental']),
  base: z.string().nullable(),
  bundles: z.array(BundleSchema),
  setFiles: n,
  setBytes: n,
  elapsedMs: n.nullable(),
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
  const k = r.keep;
  return {
    dest: r.dest ?? null,
    repository: r.repository ?? null,
    keep: k ? { keepLast: k.keepLast ?? null, keepDaily: k.keepDaily ?? null, keepWeekly: k.keepWeekly ?? null, keepMonthly: k.keepMonthly ?? null } : null,
    fullEvery: r.fullEvery ?? null,
    bundleTimeoutMs: r.bundleTimeoutMs ?? null,
    bundles: r.bundles ?? null,
    incremental: r.incremental,
    rate: r.rate ?? null,
  };
}
export function jsonScheduledSummary(s: ScheduledBackupSummary) {
  const repo = s.repository;
  return {
    set: s.set,
    repository: repo
      ? {
          name: repo.name,
          snapshot: repo.snapshot ?? null,
          baseSnapshot: repo.baseSnapshot ?? null,
          bytesProcessed: repo.bytesProcessed ?? null,
          dataAdded: repo.dataAdded ?? null,
          forgotten: repo.forgotten ?? null,
          pruned: repo.pruned ?? null,
          problem: repo.problem ?? null,
        }
      : null,
    sessionId: s.sessionId,
    uiUrl: s.uiUrl,
    kind: s.kind,
    base: s.base ?? null,
    bundles: s.bundles.map((b) => jsonBundle(b, null)),
    setFiles: s.files,
    setBytes: s.bytes,
    elapsedMs: s.elapsedMs ?? null,
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

/** A snapshot of a repository, in every repository command. */
const SnapshotSchema = z.strictObject({
  id: z.string(),
  shortId: z.string(),
  time: z.string(),
  device: z.string(),
  sessionId: z.string(),
  kind: z.enum(['backup', 'incremental']),
  bundles: z.array(z.string()),
  /** Some bundle of the session is not stored. */
  partial: z.boolean(),
  /** An increment's base: its snapshot ID and session. */
  base: z.strictObject({ id: z.string(), sessionId: z.string() }).nullable(),
  size: n.nullable(),
  dataAdded: n.nullable(),
});
export function jsonSnapshot(s: Omit<SnapshotInfo, 'tags'>): z.infer<typeof SnapshotSchema> {
  return {
    id: s.id,
    shortId: s.shortId,
    time: s.time,
    device: s.device,
    sessionId: s.sessionId,
    kind: s.kind,
    bundles: s.bundles,
    partial: Boolean(s.partial),
    base: s.base ? { id: s.base.id, sessionId: s.base.sessionId } : null,
    size: s.size ?? null,
    dataAdded: s.dataAdded ?? null,
  };
}

/** What storing a backup read and added (restic's summary). */
const StoreSchema = z.strictObject({
  snapshotId: z.string(),
  bytesProcessed: n,
  filesProcessed: n,
  dataAdded: n,
  dataAddedPacked: n,
  filesNew: n,
  filesChanged: n,
  filesUnmodified: n,
  seconds: z.number().nonnegative(),
});
const jsonStore = (s: StoreSummary): z.infer<typeof StoreSchema> => ({
  snapshotId: s.snapshotId,
  bytesProcessed: s.bytesProcessed,
  filesProcessed: s.filesProcessed,
  dataAdded: s.dataAdded,
  dataAddedPacked: s.dataAddedPacked,
  filesNew: s.filesNew,
  filesChanged: s.filesChanged,
  filesUnmodified: s.filesUnmodified,
  seconds: s.seconds,
});

/** A backup into a repository: its set was staged and removed, so entries and data are not read (null). */
export function jsonRepositoryBackup(r: RepositoryBackupResult, elapsedMs: number) {
  const counts = r.bundles.map(() => null);
  return {
    sessionId: r.sessionId,
    uiUrl: r.uiUrl,
    repository: r.repository,
    kind: r.kind,
    snapshot: r.snapshot ? jsonSnapshot(r.snapshot) : null,
    baseSnapshot: r.baseSnapshot?.id ?? null,
    store: r.store ? jsonStore(r.store) : null,
    bundles: r.bundles.map((b) => jsonBundle(b, null)),
    totals: jsonTotals(r.bundles, counts, elapsedMs),
    error: r.error ?? null,
    interrupted: r.interrupted,
    endedElsewhere: r.endedElsewhere ?? null,
  };
}

export function jsonRepositoryRestore(r: RepositoryRestoreResult, elapsedMs: number) {
  return {
    sessionId: r.sessionId,
    uiUrl: r.uiUrl,
    repository: r.repository,
    snapshots: r.snapshots.map(jsonSnapshot),
    to: r.to ?? null,
    device: r.device ?? null,
    taskQueue: r.taskQueue,
    map: r.map,
    bundles: r.bundles.map((b) => jsonBundle(b, null)),
    sets: r.sets.map(jsonRestoredSet),
    totals: jsonTotals(
      r.bundles,
      r.bundles.map(() => null),
      elapsedMs,
    ),
    error: r.error ?? null,
    interrupted: r.interrupted,
    endedElsewhere: r.endedElsewhere ?? null,
    incomplete: r.incomplete ?? null,
  };
}

export function jsonRestoredSet(s: RepositoryRestoreResult['sets'][number]) {
  return { from: s.from, sessionId: s.sessionId, uiUrl: s.uiUrl, bundles: s.bundles.map((b) => jsonBundle(b, null)), error: s.error ?? null };
}

export const jsonRepository = {
  snapshots: (repository: string, list: SnapshotInfo[]) => ({ repository, snapshots: list.map(jsonSnapshot) }),
  check: (r: CheckResult & { repository: string }) => ({
    repository: r.repository,
    ok: r.ok,
    restic: r.restic,
    damaged: r.damaged,
    snapshotsChecked: r.snapshotsChecked,
  }),
  checkSet: (r: SetCheck) => ({ set: r.set, ok: r.ok, bundles: r.bundles }),
  forget: (r: ForgetResult & { repository: string }) => ({
    repository: r.repository,
    dryRun: r.dryRun,
    pruned: r.pruned,
    forgotten: r.forgotten,
    decisions: r.decisions.map((d) => ({ snapshot: jsonSnapshot(d.snapshot), keep: d.keep, reasons: d.reasons })),
  }),
  diff: (repository: string, r: DiffResult) => ({
    repository,
    a: jsonSnapshot(r.a),
    b: jsonSnapshot(r.b),
    bundles: r.bundles.map((b) => ({ ...b, only: b.only ?? null })),
  }),
};

const RepositoryRunShape = { sessionId: z.string(), uiUrl: z.string(), repository: z.string() };
const RunEnd = {
  bundles: z.array(BundleSchema),
  totals: TotalsSchema,
  error: ErrorInfoSchema.nullable(),
  interrupted: z.boolean(),
  endedElsewhere: z.string().nullable(),
  outcome: Outcome,
  elapsedMs: n,
};

const Steered = { sessionId: z.string(), bundleName: z.string(), message: z.string() };
const SessionBundleSchema = BundleSchema.extend({ sendRate: n.nullable() });

const DeviceRunShape = {
  runId: z.string(),
  uiUrl: z.string(),
  kind: z.enum(['backup', 'restore', 'snapshots', 'check', 'forget', 'diff']),
  device: z.string(),
  repository: z.string(),
  outcome: Outcome,
  sessionId: z.string().nullable(),
  /** Which attempt of the run's activity finished it (2 and more: a device worker died mid-run). */
  attempt: n,
  bundles: z.array(BundleSchema),
  files: n,
  bytes: n,
  snapshot: SnapshotSchema.nullable(),
  snapshots: z.array(SnapshotSchema).nullable(),
  baseSnapshot: SnapshotSchema.nullable(),
  store: z.strictObject({ filesNew: n, filesChanged: n, dataAdded: n, totalBytes: n }).nullable(),
  error: ErrorInfoSchema.nullable(),
  elapsedMs: n,
};
/** A device-side run's result (backup/restore --on-device, follow). */
export const jsonDeviceRun = (r: FollowedDeviceRun) => ({
  runId: r.workflowId,
  uiUrl: r.uiUrl,
  kind: r.kind,
  device: r.device,
  repository: r.repository,
  outcome: r.outcome,
  sessionId: r.sessionId ?? null,
  attempt: r.attempt,
  bundles: r.bundles.map((b) => jsonBundle(b, null)),
  files: r.files,
  bytes: r.bytes,
  snapshot: r.snapshot ? jsonSnapshot(r.snapshot) : null,
  snapshots: r.snapshots ? r.snapshots.map(jsonSnapshot) : null,
  baseSnapshot: r.baseSnapshot ? jsonSnapshot(r.baseSnapshot) : null,
  store: r.store ?? null,
  error: r.error ?? null,
});
export const jsonDeviceRunStarted = (s: StartedDeviceRun) => ({ runId: s.workflowId, uiUrl: s.uiUrl, device: s.device, waitingForWorker: s.waitingForWorker });
const DeviceSchema = z.strictObject({
  device: z.string(),
  taskQueue: z.string(),
  live: z.boolean(),
  lastSeen: z.string().nullable(),
  version: z.string().nullable(),
  repositories: z.array(z.string()),
  startedAt: z.string().nullable(),
  identity: z.string().nullable(),
});
export const jsonDevices = (list: DeviceView[]) => ({
  devices: list.map((d) => ({
    device: d.device,
    taskQueue: d.taskQueue,
    live: d.live,
    lastSeen: d.lastSeen ?? null,
    version: d.version ?? null,
    repositories: d.repositories ?? [],
    startedAt: d.startedAt ?? null,
    identity: d.identity ?? null,
  })),
});

/** The summary line of every command, by the `command` it names. */
export const COMMAND_SCHEMAS = {
  'device run': Summary('device run', DeviceRunShape),
  'device run started': Summary('device run started', {
    runId: z.string(),
    uiUrl: z.string(),
    device: z.string(),
    waitingForWorker: z.boolean(),
    outcome: z.literal('done'),
    elapsedMs: n,
  }),
  devices: Summary('devices', { devices: z.array(DeviceSchema) }),
  // Into a set folder (`out`, `base`) or into a repository (`repository`, `snapshot`, `baseSnapshot`, `store`).
  backup: z.union([
    Summary('backup', {
      sessionId: z.string(),
      uiUrl: z.string(),
      out: z.string(),
      kind: z.enum(['backup', 'incremental']),
      base: z.string().nullable(),
      ...RunEnd,
    }),
    Summary('backup', {
      ...RepositoryRunShape,
      kind: z.enum(['backup', 'incremental']),
      snapshot: SnapshotSchema.nullable(),
      baseSnapshot: z.string().nullable(),
      store: StoreSchema.nullable(),
      ...RunEnd,
    }),
  ]),
  // From a set folder (`from`) or from a repository (`repository`, `snapshots`: the chain restored, root first).
  restore: z.union([
    Summary('restore', {
      ...RepositoryRunShape,
      snapshots: z.array(SnapshotSchema),
      to: z.string().nullable(),
      device: z.string().nullable(),
      taskQueue: z.string(),
      map: z.record(z.string(), z.string()),
      sets: z.array(RestoredSetSchema),
      incomplete: z.string().nullable(),
      ...RunEnd,
    }),
    Summary('restore', {
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
  ]),
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
  'repo init': Summary('repo init', { repository: z.string() }),
  snapshots: Summary('snapshots', { repository: z.string(), snapshots: z.array(SnapshotSchema) }),
  // A repository, or (`ohbackup check DIR`) a set folder.
  check: z.union([
    Summary('check', {
      repository: z.string(),
      ok: z.boolean(),
      restic: z.strictObject({ ok: z.boolean(), errors: n, brokenPacks: z.array(z.string()), messages: z.array(z.string()) }),
      damaged: z.array(z.strictObject({ snapshot: z.string(), bundleName: z.string(), problem: z.string() })),
      snapshotsChecked: n,
    }),
    Summary('check', {
      set: z.string(),
      ok: z.boolean(),
      bundles: z.array(z.strictObject({ bundleName: z.string(), problems: z.array(z.string()) })),
    }),
  ]),
  forget: Summary('forget', {
    repository: z.string(),
    dryRun: z.boolean(),
    pruned: z.boolean(),
    forgotten: z.array(z.string()),
    decisions: z.array(z.strictObject({ snapshot: SnapshotSchema, keep: z.boolean(), reasons: z.array(z.string()) })),
  }),
  diff: Summary('diff', {
    repository: z.string(),
    a: SnapshotSchema,
    b: SnapshotSchema,
    bundles: z.array(
      z.strictObject({
        bundleName: z.string(),
        new: z.array(z.string()),
        changed: z.array(z.string()),
        deleted: z.array(z.string()),
        touched: z.array(z.string()),
        only: z.enum(['a', 'b']).nullable(),
      }),
    ),
  }),
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
