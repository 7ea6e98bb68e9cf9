/**
 * `ohbackup restore`: restores bundles of a backup set (as `ohbackup backup`
 * writes it) onto a device through one restore session. A set that is an
 * increment (its backup_set.json names a `base`) is restored as a chain: the
 * root set first, then each increment after it, oldest first, one session per
 * set, onto the same device (the worker merges an increment by itself).
 * `runRestore` is the
 * whole run without any printing, so scripts/demo.js goes through exactly the
 * code the command does; `restoreProgressReporter` and `formatRestoreResult`
 * are the command's output.
 *
 * The device is either the one the configured task queue serves
 * (OHBACKUP_TASK_QUEUE), or, with `to`, a data root on this machine served by
 * a worker this run starts in-process on a private task queue and stops after.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import cliProgress from 'cli-progress';
import type { Client } from '@temporalio/client';
import { InvalidArgumentError, type Command } from 'commander';
import { BusinessError } from '../../common/businessError.js';
import { deviceTaskQueue } from '../../common/deviceQueue.js';
import { readSettings } from '../../config/env.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { INDEX_URI, ManageIndexSchema } from '../../common/manageIndex.js';
import type { BundleOutcome } from '../../common/session.js';
import { runWorker } from '../../workers/runWorker.js';
import * as backup from '../backup.js';
import { SET_CAPABILITIES, readSetInfo, type SetInfo } from '../backupSet.js';
import { taskQueue as configuredTaskQueue, device } from '../connection.js';
import { toBusinessError } from '../failures.js';
import { restoreFromSet, type RestoreProgress } from '../restoreSet.js';
import { SessionControl } from '../sessionControl.js';
import { BundleNameArg } from '../validate.js';
import { SetupError, connect, sessionUiUrl, waitForWorkers } from './backup.js';
import { EXIT, formatBytes, formatTable, onStopSignals, parseDeviceId, usageError } from './shared.js';

export type RestoreProgressEvent =
  /**
   * A session starts. `from`: the set it restores; `step` / `steps`: its place
   * in the chain of sets restored (1 of 1 for a set that is no increment).
   */
  | { type: 'start'; sessionId: string; bundles: string[]; taskQueue: string; device?: string; to?: string; from?: string; step?: number; steps?: number }
  /** `total`: the files of the bundle to write (its tar slices, big files and index). */
  | { type: 'begin'; bundleName: string; total: number }
  | { type: 'file'; bundleName: string; files: number; total: number }
  | { type: 'end'; outcome: BundleOutcome }
  | { type: 'notice'; message: string };

export interface RunRestoreOptions {
  /** The backup set folder (`ohbackup backup --out`). */
  from: string;
  /** Bundles to restore; none = every bundle the set holds (state done in backup_set.json). */
  bundles?: string[];
  /**
   * Restore onto the device at this data root (created, 0700, if missing): a
   * worker for it runs in this process on a private task queue while the
   * session runs. Without it, the session goes to the configured device task
   * queue (OHBACKUP_TASK_QUEUE), which some worker must serve.
   */
  to?: string;
  /** source bundle → target bundle on the device (app_mapping_relation). */
  map?: Record<string, string>;
  onProgress?: (event: RestoreProgressEvent) => void;
  /** Aborting releases the session: running bundles are stopped, and the run returns as interrupted. */
  signal?: AbortSignal;
}

/** One restore session of the run: one set of the chain. */
export interface RestoredSet {
  /** The set folder (absolute). */
  from: string;
  sessionId: string;
  uiUrl: string;
  /** The outcome of each bundle restored from this set. */
  bundles: BundleOutcome[];
  /** Set when this session itself failed. */
  error?: ErrorInfo;
}

export interface RestoreRunResult {
  /** The last session run (the only one, unless `from` is an increment). */
  sessionId: string;
  namespace: string;
  uiUrl: string;
  from: string;
  /** The data root restored onto, when `to` was given. */
  to?: string;
  taskQueue: string;
  /** The device restored onto (`--device`), when one was named. */
  device?: string;
  map: Record<string, string>;
  /**
   * One per restored bundle, named by its name in the set: its final outcome
   * over the chain (done only if every set of its chain was restored; files
   * and bytes summed over them).
   */
  bundles: BundleOutcome[];
  /** The sets restored, oldest first, each by its own session. */
  sets: RestoredSet[];
  /** Set when the session itself failed (not just some bundles). */
  error?: ErrorInfo;
  interrupted: boolean;
  /** 0 all done, 3 partial, 1 all failed or session failed, 130 interrupted. */
  exitCode: number;
}

const info = (err: BusinessError<unknown>): ErrorInfo => ({ code: err.code, message: err.message });
const never = new Promise<never>(() => undefined);

/** The bundles a backup set holds completely: state `done` in its backup_set.json. */
export function readSetBundles(from: string): string[] {
  try {
    return readSetInfo(from).done;
  } catch (err) {
    throw new SetupError(`--from ${(err as Error).message}.`, EXIT.usage);
  }
}

/**
 * The chain of sets ending at `from`, root first: `from`, its base, the
 * base's base, … until a set names none. A base that is not a readable set,
 * or a loop, is wrong usage.
 */
export function readSetChain(from: string): SetInfo[] {
  const chain: SetInfo[] = [];
  const seen = new Set<string>();
  let dir = path.resolve(from);
  let namedBy: string | undefined;
  for (;;) {
    let set: SetInfo;
    try {
      set = readSetInfo(dir);
    } catch (err) {
      throw new SetupError(
        namedBy ? `the backup set ${namedBy} is an increment of ${dir}, which is missing or broken: ${(err as Error).message}.` : `--from ${(err as Error).message}.`,
        EXIT.usage,
      );
    }
    const real = realpathSync(set.dir);
    if (seen.has(real)) {
      const dirs = [...chain].reverse().map((c) => c.dir);
      throw new SetupError(`the base sets of ${dirs[0]} form a loop: ${[...dirs, set.dir].join(' → ')}.`, EXIT.usage);
    }
    seen.add(real);
    chain.unshift(set);
    if (!set.base) return chain;
    namedBy = set.dir;
    dir = set.base;
  }
}

/** Whether the set's index of the bundle is an increment (has an `incremental` block); an unreadable index is wrong usage. */
function isIncrement(set: SetInfo, bundleName: string): boolean {
  const file = path.join(set.dir, bundleName, INDEX_URI);
  let parsed: ReturnType<typeof ManageIndexSchema.safeParse>;
  try {
    parsed = ManageIndexSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    throw new SetupError(`the backup set ${set.dir} has no readable index of ${bundleName} (${file}: ${(err as Error).message}).`, EXIT.usage);
  }
  if (!parsed.success) throw new SetupError(`the backup set ${set.dir} has no valid index of ${bundleName} (${file}: ${parsed.error.issues[0]?.message}).`, EXIT.usage);
  return parsed.data.incremental !== undefined;
}

/**
 * The positions in `chain` of the sets `bundleName` is restored from, oldest
 * first: back from the newest set through its increments to the set that
 * holds it in full. A link the chain lacks is wrong usage.
 */
function bundleLinks(chain: SetInfo[], bundleName: string): number[] {
  const links: number[] = [];
  for (let k = chain.length - 1; k >= 0; k--) {
    const set = chain[k]!;
    if (!set.done.includes(bundleName)) {
      throw new SetupError(`${bundleName}: ${chain[k + 1]!.dir} holds an increment of it, but its base ${set.dir} does not hold it completely: the chain is broken.`, EXIT.usage);
    }
    links.unshift(k);
    if (!isIncrement(set, bundleName)) return links;
  }
  throw new SetupError(`${bundleName}: ${chain[0]!.dir} holds an increment of it but names no base set: the chain is broken.`, EXIT.usage);
}

function checkName(name: string, what: string): void {
  if (!BundleNameArg.safeParse(name).success) throw new SetupError(`${what} "${name}" is not a bundle name (like com.example.notes).`, EXIT.usage);
}

export async function runRestore(opts: RunRestoreOptions): Promise<RestoreRunResult> {
  const emit = opts.onProgress ?? (() => undefined);
  const from = path.resolve(opts.from);

  // Everything that is wrong usage is found before anything starts.
  const chain = readSetChain(from);
  const held = chain[chain.length - 1]!.done;
  if (!statSync(path.join(from, SET_CAPABILITIES), { throwIfNoEntry: false })?.isFile()) {
    throw new SetupError(`--from ${from} is not a backup set (it has no ${SET_CAPABILITIES}).`, EXIT.usage);
  }
  const asked = [...new Set(opts.bundles ?? [])];
  for (const name of asked) {
    checkName(name, 'bundle');
    if (!held.includes(name)) throw new SetupError(`the backup set ${from} does not hold bundle ${name} (it holds: ${held.join(', ') || 'none'}).`, EXIT.usage);
  }
  const names = asked.length ? asked : held;
  const map = { ...(opts.map ?? {}) };
  for (const [source, target] of Object.entries(map)) {
    checkName(source, '--map source');
    checkName(target, '--map target');
    if (!names.includes(source)) throw new SetupError(`--map ${source}=${target}: ${source} is not among the bundles restored (${names.join(', ') || 'none'}).`, EXIT.usage);
  }
  let to: string | undefined;
  if (opts.to !== undefined) {
    to = path.resolve(opts.to);
    const st = statSync(to, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) throw new SetupError(`--to ${to} is not a folder.`, EXIT.usage);
  }
  if (!names.length) throw new SetupError(`The backup set ${from} holds no completely backed-up bundle: nothing to restore.`, EXIT.failed);
  // Each bundle's sets, root first; and the sets any bundle needs, each of which must be whole.
  const links = new Map(names.map((n) => [n, bundleLinks(chain, n)]));
  const steps = [...new Set([...links.values()].flat())].sort((a, b) => a - b);
  for (const k of steps) {
    const dir = chain[k]!.dir;
    if (!statSync(path.join(dir, SET_CAPABILITIES), { throwIfNoEntry: false })?.isFile()) {
      throw new SetupError(`the backup set ${dir} (a base of ${from}) is not whole: it has no ${SET_CAPABILITIES}.`, EXIT.usage);
    }
  }

  const client = await connect();
  const namespace = client.options.namespace;
  const stopWorker = new AbortController();
  let worker: Worker | undefined;
  let queue: string;
  try {
    if (to) {
      await mkdir(to, { recursive: true, mode: 0o700 });
      queue = `ohbackup-restore-${randomUUID()}`;
      worker = startWorker(to, queue, stopWorker.signal);
      // Building the worker (bundling its workflows) takes seconds: an interruption meanwhile ends the run here.
      await Promise.race([worker.ready, abortion(opts.signal)]);
    } else {
      queue = configuredTaskQueue();
      await waitForWorkers(client).catch((err: unknown) => {
        if (err instanceof SetupError) err.message += '\nOr restore onto a data root on this machine: `ohbackup restore --from SET --to DIR`.';
        throw err;
      });
    }
    if (opts.signal?.aborted) throw new SetupError('Interrupted before the restore session started: nothing was restored.', EXIT.interrupted);
    const run = await restoreChain({ client, chain, steps, links, map, queue, to, emit, signal: opts.signal, workerStopped: worker?.stopped });
    const last = run.sets[run.sets.length - 1];
    if (!last) throw new SetupError('Interrupted before the restore session started: nothing was restored.', EXIT.interrupted);
    return { ...run, sessionId: last.sessionId, namespace, uiUrl: last.uiUrl, from, to, taskQueue: queue, ...(!to && device() ? { device: device() } : {}), map };
  } finally {
    stopWorker.abort();
    await worker?.catch(() => undefined);
  }
}

/**
 * One session per set of the chain that some bundle needs, oldest first;
 * a bundle leaves the chain at its first link that is not done.
 */
async function restoreChain(a: {
  client: Client;
  chain: SetInfo[];
  steps: number[];
  links: Map<string, number[]>;
  map: Record<string, string>;
  queue: string;
  to?: string;
  emit: (e: RestoreProgressEvent) => void;
  signal?: AbortSignal;
  workerStopped?: Promise<BusinessError>;
}): Promise<{ bundles: BundleOutcome[]; sets: RestoredSet[]; error?: ErrorInfo; interrupted: boolean; exitCode: number }> {
  const namespace = a.client.options.namespace;
  const finals = new Map<string, BundleOutcome>([...a.links.keys()].map((n) => [n, { bundleName: n, state: 'pending', files: 0, bytes: 0 }]));
  const ran = new Set<string>();
  const sets: RestoredSet[] = [];
  const isChain = a.steps.length > 1;
  let error: ErrorInfo | undefined;
  let interrupted = false;
  for (const [i, k] of a.steps.entries()) {
    const names = [...a.links].filter(([n, ks]) => ks.includes(k) && finals.get(n)!.state === 'pending').map(([n]) => n);
    if (!names.length) continue;
    if (a.signal?.aborted) {
      interrupted = true;
      break;
    }
    const from = a.chain[k]!.dir;
    const map = Object.fromEntries(Object.entries(a.map).filter(([source]) => names.includes(source)));
    const run = await restoreSession({
      client: a.client,
      from,
      names,
      map,
      queue: a.queue,
      to: a.to,
      emit: a.emit,
      signal: a.signal,
      workerStopped: a.workerStopped,
      step: i + 1,
      steps: a.steps.length,
    });
    sets.push({ from, sessionId: run.sessionId, uiUrl: sessionUiUrl(namespace, run.sessionId), bundles: run.bundles, ...(run.error ? { error: run.error } : {}) });
    error ??= run.error;
    for (const o of run.bundles) {
      const f = finals.get(o.bundleName);
      if (!f) continue;
      ran.add(o.bundleName);
      f.files += o.files;
      f.bytes += o.bytes;
      if (o.state !== 'done') {
        f.state = o.state;
        if (o.error) f.error = isChain ? { ...o.error, message: `${o.error.message} (restoring ${from})` } : o.error;
      } else if (k === a.links.get(o.bundleName)!.at(-1)) f.state = 'done';
    }
    if (run.interrupted) {
      interrupted = true;
      break;
    }
  }
  for (const f of finals.values()) {
    if (f.state !== 'pending') continue;
    if (!ran.has(f.bundleName)) f.state = 'notStarted';
    else {
      // Restored up to some increment only: the data is an older state than the one asked for.
      f.state = 'failed';
      f.error ??= { code: ErrorCode.TASK_FAILED, message: interrupted ? 'Interrupted before its later increments were restored' : 'Its later increments were not restored' };
    }
  }
  const bundles = [...finals.values()];
  const done = bundles.filter((b) => b.state === 'done').length;
  const exitCode = interrupted ? EXIT.interrupted : error || done === 0 ? EXIT.failed : done < bundles.length ? EXIT.partial : EXIT.ok;
  return { bundles, sets, error, interrupted, exitCode };
}

type Worker = Promise<void> & { ready: Promise<void>; stopped: Promise<BusinessError> };

/** The data root's worker, in this process, on its own task queue; `ready` once it polls, `stopped` if it ends by itself. */
function startWorker(dataRoot: string, queue: string, signal: AbortSignal): Worker {
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const run = runWorker({ settings: { ...readSettings(), taskQueue: queue }, dataRoot, signal, onReady, embedded: true });
  const worker = run as Worker;
  worker.ready = Promise.race([
    ready,
    run.then(
      () => Promise.reject(new SetupError('The restore worker stopped before it started.', EXIT.failed)),
      (err: unknown) => Promise.reject(new SetupError(`The restore worker for ${dataRoot} could not start: ${(err as Error)?.message ?? err}`, EXIT.failed)),
    ),
  ]);
  worker.stopped = run.then(
    () => new BusinessError(ErrorCode.TASK_FAILED, 'The restore worker stopped'),
    (err: unknown) => new BusinessError(ErrorCode.TASK_FAILED, `The restore worker failed: ${(err as Error)?.message ?? err}`),
  );
  // Observed through `ready` / `stopped`; keep the bare promise from counting as unhandled.
  run.catch(() => undefined);
  return worker;
}

interface SessionRun {
  sessionId: string;
  bundles: BundleOutcome[];
  error?: ErrorInfo;
  interrupted: boolean;
  exitCode: number;
}

async function restoreSession(a: {
  client: Client;
  from: string;
  names: string[];
  map: Record<string, string>;
  queue: string;
  to?: string;
  emit: (e: RestoreProgressEvent) => void;
  signal?: AbortSignal;
  workerStopped?: Promise<BusinessError>;
  step?: number;
  steps?: number;
}): Promise<SessionRun> {
  const { emit } = a;
  const sessionId = `ohbackup-restore-${randomUUID()}`;
  const outcomes = new Map<string, BundleOutcome>(a.names.map((n) => [n, { bundleName: n, state: 'pending', files: 0, bytes: 0 }]));
  const outcome = (name: string) => {
    let o = outcomes.get(name);
    if (!o) outcomes.set(name, (o = { bundleName: name, state: 'pending', files: 0, bytes: 0 }));
    return o;
  };
  // Once the run has its result, late events (the tail of a released session) change nothing.
  let settled = false;
  const onProgress = (p: RestoreProgress) => {
    if (settled) return;
    const o = outcome(p.bundleName);
    if (p.type === 'begin') {
      o.state = 'running';
      emit({ type: 'begin', bundleName: p.bundleName, total: p.total ?? 0 });
    } else if (p.type === 'file') {
      o.files = p.files ?? o.files;
      emit({ type: 'file', bundleName: p.bundleName, files: o.files, total: p.total ?? 0 });
    } else if (p.outcome) {
      Object.assign(o, p.outcome);
      emit({ type: 'end', outcome: { ...o } });
    }
  };

  // The session workflow closing before every bundle ended (terminated in the UI, say) must end the wait too.
  // Watched from its first event on, when it surely exists; its completion by our own release is not a failure.
  let allEnded = false;
  let arm!: () => void;
  const armed = new Promise<void>((resolve) => (arm = resolve));
  const closed = armed
    .then(() =>
      a.client.workflow
        .getHandle(sessionId)
        .result()
        .then(
          () => toBusinessError(new Error('the session workflow completed before its bundles ended')),
          (e: unknown) => toBusinessError(e),
        ),
    )
    .then((err) => (allEnded ? never : err));

  emit({ type: 'start', sessionId, bundles: a.names, taskQueue: a.queue, ...(!a.to && device() ? { device: device() } : {}), to: a.to, from: a.from, step: a.step, steps: a.steps });
  const run = restoreFromSet({
    from: a.from,
    bundles: a.names,
    map: Object.keys(a.map).length ? a.map : undefined,
    // With --to, the run's own worker serves the data root: no device's queue is involved.
    session: { sessionId, taskQueue: a.queue, ...(a.to ? { device: null } : {}) },
    onProgress,
    observe: {
      onBundleBegin: () => arm(),
      onFileReady: () => arm(),
      onBundleEnd: () => arm(),
      onAllBundlesEnd: () => {
        allEnded = true;
        arm();
      },
      onBackupServiceDied: () =>
        emit({ type: 'notice', message: 'The backup service is unreachable (no worker serves the session); the session continues once one is back ...' }),
    },
  });
  run.catch(() => undefined);

  let error: ErrorInfo | undefined;
  let interrupted = false;
  const first = await Promise.race([
    run.then(
      (r) => ({ how: 'done' as const, r }),
      (e: unknown) => ({ how: 'failed' as const, err: toBusinessError(e) }),
    ),
    closed.then((err) => ({ how: 'failed' as const, err })),
    (a.workerStopped ?? never).then((err) => ({ how: 'failed' as const, err })),
    abortion(a.signal).then(() => ({ how: 'aborted' as const })),
  ]);
  if (first.how === 'done') {
    for (const o of first.r.bundles) Object.assign(outcome(o.bundleName), o);
  } else {
    if (first.how === 'aborted') {
      interrupted = true;
      emit({ type: 'notice', message: 'Interrupted: releasing the session (running bundles are stopped) ...' });
    } else {
      error = info(first.err);
    }
    // Whatever still runs is stopped and the session completes; its result is the authoritative outcome.
    try {
      const released = await (await SessionControl.of(sessionId)).release();
      for (const r of released.bundles) {
        const o = outcomes.get(r.bundleName);
        if (!o) continue;
        // The workflow decides the state; the counts are the larger of its and ours (a restore reports its bytes only at the end).
        Object.assign(o, { state: r.state, error: r.error ?? o.error, files: Math.max(o.files, r.files), bytes: Math.max(o.bytes, r.bytes) });
      }
    } catch (err) {
      // Already completed (released, terminated), or never started: nothing more to stop.
      if (!error && !interrupted) error = info(toBusinessError(err));
    }
  }

  for (const o of outcomes.values()) {
    if (o.state === 'pending') o.state = 'notStarted';
    else if (o.state === 'running') {
      o.state = 'failed';
      o.error ??= { code: ErrorCode.TASK_FAILED, message: interrupted ? 'Interrupted' : 'The session ended before the bundle did' };
    }
  }
  settled = true;
  const bundles = [...outcomes.values()].map((o) => ({ ...o }));
  const done = bundles.filter((b) => b.state === 'done').length;
  const exitCode = interrupted ? EXIT.interrupted : error || done === 0 ? EXIT.failed : done < bundles.length ? EXIT.partial : EXIT.ok;
  return { sessionId, bundles, error, interrupted, exitCode };
}

function abortion(signal?: AbortSignal): Promise<void> {
  if (!signal) return never;
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

export interface RestoreProgressReporter {
  onProgress(event: RestoreProgressEvent): void;
  stop(): void;
}

/** Progress on `stream` (stderr, so stdout stays the result): one bar per bundle (files written / total) on a TTY, else plain lines. */
export function restoreProgressReporter(stream: NodeJS.WriteStream = process.stderr): RestoreProgressReporter {
  return stream.isTTY ? barReporter(stream) : lineReporter(stream);
}

function endLine(o: BundleOutcome): string {
  return o.state === 'done'
    ? `done    ${o.bundleName}  ${o.files} files, ${formatBytes(o.bytes)}`
    : `${o.state.padEnd(7)} ${o.bundleName}  ${o.error ? `${o.error.code} ${o.error.message}` : ''}`;
}

function startLine(e: Extract<RestoreProgressEvent, { type: 'start' }>): string {
  const set = e.steps && e.steps > 1 && e.from ? ` from ${e.from} (set ${e.step} of ${e.steps})` : '';
  return `Session ${e.sessionId}: restoring ${e.bundles.join(', ')}${set} onto ${restoredOnto(e)}`;
}

function lineReporter(stream: NodeJS.WritableStream): RestoreProgressReporter {
  const say = (line: string) => stream.write(`${line}\n`);
  return {
    onProgress(e) {
      if (e.type === 'start') say(startLine(e));
      else if (e.type === 'begin') say(`begin   ${e.bundleName}  ${e.total} files to write`);
      else if (e.type === 'end') say(endLine(e.outcome));
      else if (e.type === 'notice') say(e.message);
    },
    stop() {},
  };
}

function barReporter(stream: NodeJS.WriteStream): RestoreProgressReporter {
  const multibar = new cliProgress.MultiBar(
    {
      stream,
      format: ' {bundle} |{bar}| {value}/{total} files  {status}',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  let width = 0;
  const label = (name: string) => name.padEnd(width);
  return {
    onProgress(e) {
      if (e.type === 'start') {
        width = Math.max(...e.bundles.map((b) => b.length));
        multibar.log(`${startLine(e)}\n`);
      } else if (e.type === 'begin') {
        bars.set(e.bundleName, multibar.create(Math.max(1, e.total), 0, { bundle: label(e.bundleName), status: '' }));
      } else if (e.type === 'file') {
        bars.get(e.bundleName)?.update(e.files);
      } else if (e.type === 'end') {
        const bar = bars.get(e.outcome.bundleName);
        const status = e.outcome.state === 'done' ? `done, ${formatBytes(e.outcome.bytes)}` : `${e.outcome.state} ${e.outcome.error?.code ?? ''}`;
        if (bar) bar.update(e.outcome.state === 'done' ? bar.getTotal() : e.outcome.files, { status });
        else multibar.log(`${endLine(e.outcome)}\n`);
      } else if (e.type === 'notice') multibar.log(`${e.message}\n`);
    },
    stop: () => multibar.stop(),
  };
}

/** The per-bundle table and where to look next. */
export function formatRestoreResult(r: RestoreRunResult): string {
  const rows = r.bundles.map((b) => [
    r.map[b.bundleName] ? `${b.bundleName} → ${r.map[b.bundleName]}` : b.bundleName,
    b.state,
    String(b.files),
    formatBytes(b.bytes),
    b.error ? `${b.error.code} ${b.error.message}` : '',
  ]);
  const lines = [formatTable(['bundle', 'state', 'files', 'bytes', 'error'], rows, [2, 3]), ''];
  if (r.error) lines.push(`Session failed: ${r.error.code} ${r.error.message}`);
  if (r.interrupted) lines.push('Interrupted: the session was released; bundles not done were not restored.');
  if (r.sets.length > 1) {
    lines.push(`Backup set   ${r.from}, an increment: restored as a chain of ${r.sets.length} sets, oldest first`, `Restored to  ${restoredOnto(r)}`);
    for (const [i, s] of r.sets.entries()) {
      lines.push(`  ${i + 1}. ${s.from}${s.error ? `  (session failed: ${s.error.code} ${s.error.message})` : ''}`, `     Session      ${s.sessionId}`, `     Temporal UI  ${s.uiUrl}`);
    }
    return lines.join('\n');
  }
  lines.push(
    `Backup set   ${r.from}`,
    `Restored to  ${restoredOnto(r)}`,
    `Session      ${r.sessionId}`,
    `Temporal UI  ${r.uiUrl}`,
  );
  return lines.join('\n');
}

/** `--map old=new`, collected over repeats. */
function parseMapping(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const m = /^([^=]+)=([^=]+)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected old=new (two bundle names, like com.example.notes=com.example.notes2).');
  const [, source, target] = m as unknown as [string, string, string];
  for (const name of [source, target]) {
    if (!BundleNameArg.safeParse(name).success) throw new InvalidArgumentError(`"${name}" is not a bundle name (like com.example.notes).`);
  }
  if (previous[source] !== undefined && previous[source] !== target) throw new InvalidArgumentError(`${source} is mapped twice.`);
  return { ...previous, [source]: target };
}

export function registerRestore(program: Command): void {
  program
    .command('restore')
    .summary('restore bundles of a backup set onto a device')
    .description(
      'Restore bundles of a backup set (`ohbackup backup --out SET`) onto a device through one restore session (a Temporal workflow). ' +
        'A set that is an increment (`ohbackup backup --base`) is restored with its bases: the root set first, then each increment, oldest first, one session per set. ' +
        'With --to, onto that data root on this machine, served by a worker this command runs for the session; ' +
        'else onto the device whose worker serves the configured task queue (`ohbackup worker` or `ohbackup dev`).',
    )
    .argument('[bundle...]', 'bundles to restore (default: every bundle the set holds completely)')
    .requiredOption('--from <set>', 'the backup set folder to restore from (an increment: with its chain of base sets)')
    .option('--to <data-root>', 'restore onto this device data root (created, 0700, if missing) with an in-process worker')
    .option('--map <old=new>', "restore a bundle's data into another bundle (app_mapping_relation); repeatable", parseMapping)
    .option('--device <id>', 'restore onto the device of this ID, served by `ohbackup worker --device ID` (not with --to)', parseDeviceId)
    .option('--json', 'print the result as one JSON object (sessionId, uiUrl, bundles, sets)')
    .addHelpText(
      'after',
      `
Exit codes: 0 every bundle done; 3 some failed, some done; 1 all failed or the session failed;
            2 wrong usage (a bundle the set does not hold, a bad --map, a missing base set or a loop of bases);
            130 interrupted (Ctrl-C releases the session).
A bundle restored from a chain is done only if every set of its chain was restored; its chain stops at the first failure.

Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*;
task queue without --to: OHBACKUP_TASK_QUEUE (default "ohbackup"), and with --device ID the device's own (ohbackup-device-ID); UI link base: OHBACKUP_UI_URL (default http://127.0.0.1:8233).

Examples:
  $ ohbackup restore --from ./set                                   # onto the device \`ohbackup dev\` / \`worker\` serves
  $ ohbackup restore --from ./set --to ./new-device                 # onto an empty data root on this machine
  $ ohbackup restore --from ./set --device phone-2                  # onto the device whose worker runs \`ohbackup worker --device phone-2\`
  $ ohbackup restore --from ./set com.example.notes --map com.example.notes=com.example.notes2
  $ ohbackup restore --from ./set --to ./new-device --json com.example.docs
  $ ohbackup restore --from ./inc2 --to ./new-device                # ./inc2 = backup --base ./inc1: restores ./full, ./inc1, ./inc2`,
    )
    .action(async (bundles: string[], opts: { from: string; to?: string; map?: Record<string, string>; device?: string; json?: boolean }, cmd: Command) => {
      for (const name of bundles) {
        if (!BundleNameArg.safeParse(name).success) usageError(cmd, `"${name}" is not a bundle name (like com.example.notes).`);
      }
      if (opts.device && opts.to !== undefined) usageError(cmd, '--device and --to exclude each other: --to restores onto a data root on this machine through its own worker.');
      if (opts.device) backup.configure({ device: opts.device });
      const reporter = restoreProgressReporter();
      const abort = new AbortController();
      const removeHandlers = onStopSignals(
        () => abort.abort(),
        () => process.exit(EXIT.interrupted),
      );
      let setupError: SetupError | undefined;
      try {
        const result = await runRestore({ from: opts.from, to: opts.to, map: opts.map, bundles, onProgress: (e) => reporter.onProgress(e), signal: abort.signal });
        reporter.stop();
        if (opts.json) {
          const { sessionId, uiUrl, bundles: outcomes, sets, error } = result;
          console.log(JSON.stringify({ sessionId, uiUrl, bundles: outcomes, sets, ...(error ? { error } : {}) }, null, 2));
        } else {
          console.log(`\n${formatRestoreResult(result)}`);
        }
        process.exitCode = result.exitCode;
      } catch (err) {
        reporter.stop();
        if (err instanceof SetupError) setupError = err;
        else {
          console.error(`Restore failed: ${toBusinessError(err).message}`);
          process.exitCode = EXIT.failed;
        }
      } finally {
        removeHandlers();
        await backup.closeConnection();
      }
      if (setupError?.exitCode === EXIT.usage) usageError(cmd, setupError.message);
      if (setupError) {
        console.error(setupError.message);
        process.exitCode = setupError.exitCode;
      }
    });
}

function restoredOnto(r: { to?: string; device?: string; taskQueue: string }): string {
  return r.to ?? (r.device ? `device ${r.device} (task queue ${r.taskQueue}, its worker on ${deviceTaskQueue(r.device)})` : `the device of task queue ${r.taskQueue}`);
}
