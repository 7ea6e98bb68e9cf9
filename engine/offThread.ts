/**
 * Packing, applying a restore and staging a set off the main thread: a small pool of worker
 * threads (offThreadEntry.ts) runs packBundle, applyRestore and stageBundleJob, so hashing,
 * slice writing and file creation use the other cores while the main thread
 * keeps Temporal's work (heartbeats, hand-over, polls) going. The job is the
 * same code with the same options; progress, cancellation and errors cross
 * the thread boundary as messages. docs/design/performance.md.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { readManifest, type ManifestEntry } from './formats/manifest.js';
import { packBundle, type PackOptions, type PackProgress, type PackSummary } from './pack/index.js';
import { RestoreRejected, applyRestore, type ApplyRestoreOptions, type ApplyRestoreResult } from './unpack/index.js';
import { SetMismatch } from './repository/errors.js';
import { stageBundleJob, type StageBundleJob, type StagedBundle } from './repository/stageBundle.js';

/** packBundle's options as a thread takes them: the base is read there from its manifest file. */
export type PackJob = Omit<PackOptions, 'onProgress' | 'signal' | 'base' | 'baseDigest'> & { baseManifestPath?: string };
export type RestoreJob = Omit<ApplyRestoreOptions, 'onProgress' | 'signal'>;

interface Jobs {
  pack: { opts: PackJob; progress: PackProgress; result: PackSummary };
  restore: { opts: RestoreJob; progress: { files: number; bytes: number }; result: ApplyRestoreResult };
  /** One bundle of a set staged for a repository (engine/repository/stageSet.ts). */
  stage: { opts: StageBundleJob; progress: never; result: StagedBundle };
}
export type JobKind = keyof Jobs;

/** The base manifest given to a pack job could not be read or is not valid. */
export class BaseManifestInvalid extends Error {
  override name = 'BaseManifestInvalid';
}

/** Runs one job in this thread: what a pool thread does with each job it is given. */
export async function runJob<K extends JobKind>(
  kind: K,
  opts: Jobs[K]['opts'],
  signal: AbortSignal | undefined,
  onProgress?: (p: Jobs[K]['progress']) => void,
): Promise<Jobs[K]['result']> {
  if (kind === 'restore') return applyRestore({ ...(opts as RestoreJob), signal, onProgress });
  if (kind === 'stage') return stageBundleJob(opts as StageBundleJob, signal);
  const { baseManifestPath, ...rest } = opts as PackJob;
  let base: Map<string, ManifestEntry> | undefined;
  let baseDigest: string | undefined;
  if (baseManifestPath) {
    try {
      ({ entries: base, digest: baseDigest } = await readManifest(baseManifestPath));
    } catch (err) {
      throw new BaseManifestInvalid((err as Error).message);
    }
  }
  return packBundle({ ...rest, ...(base ? { base, baseDigest } : {}), signal, onProgress: onProgress as ((p: PackProgress) => void) | undefined });
}

/** An error as it crosses the thread boundary: what the activities look at (class, errno fields) survives. */
export interface SentError {
  name: string;
  message: string;
  stack?: string;
  code?: string | number;
  errno?: number;
  syscall?: string;
  path?: string;
  /** A SetMismatch's bundle. */
  bundleName?: string;
}

export function sendableError(err: unknown): SentError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & Partial<Omit<SentError, 'name' | 'message'>>;
  const out: SentError = { name: e.name, message: e.message, stack: e.stack };
  for (const k of ['code', 'errno', 'syscall', 'path', 'bundleName'] as const) if (e[k] !== undefined) Object.assign(out, { [k]: e[k] });
  return out;
}

function revive(s: SentError): Error {
  const err =
    s.name === 'RestoreRejected' && typeof s.code === 'number'
      ? new RestoreRejected(s.code, s.message)
      : s.name === 'BaseManifestInvalid'
        ? new BaseManifestInvalid(s.message)
        : s.name === 'SetMismatch'
          ? new SetMismatch(s.message, s.bundleName)
          : Object.assign(new Error(s.message), { name: s.name });
  for (const k of ['code', 'errno', 'syscall', 'path'] as const)
    if (s[k] !== undefined && !(err instanceof RestoreRejected) && !(err instanceof SetMismatch)) Object.assign(err, { [k]: s[k] });
  if (s.stack) err.stack = s.stack;
  return err;
}

export type ToThread = { type: 'run'; id: number; kind: JobKind; opts: unknown } | { type: 'abort'; id: number };
export type FromThread =
  { type: 'progress'; id: number; progress: unknown } | { type: 'done'; id: number; result: unknown } | { type: 'error'; id: number; error: SentError };

interface Running {
  onProgress?: (p: unknown) => void;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

class EngineThread {
  readonly worker: Worker;
  readonly jobs = new Map<number, Running>();
  dead = false;
  #idle: NodeJS.Timeout | undefined;

  constructor(private readonly onGone: (t: EngineThread) => void) {
    this.worker = new Worker(new URL('./offThreadEntry.js', import.meta.url));
    // An idle pool does not keep the process alive.
    this.worker.unref();
    this.worker.on('message', (m: FromThread) => {
      const job = this.jobs.get(m.id);
      if (!job) return;
      if (m.type === 'progress') return job.onProgress?.(m.progress);
      this.settle(m.id);
      if (m.type === 'done') job.resolve(m.result);
      else job.reject(revive(m.error));
    });
    const gone = (why: Error) => {
      if (this.dead) return;
      this.dead = true;
      this.onGone(this);
      for (const [id, job] of this.jobs) {
        this.jobs.delete(id);
        job.reject(why);
      }
    };
    this.worker.on('error', (err) => gone(err instanceof Error ? err : new Error(String(err))));
    this.worker.on('exit', (code) => gone(new Error(`the engine thread exited (code ${code})`)));
  }

  add(id: number, job: Running): void {
    clearTimeout(this.#idle);
    if (this.jobs.size === 0) this.worker.ref(); // a running job keeps the process alive, as it did on the main thread
    this.jobs.set(id, job);
  }

  settle(id: number): void {
    this.jobs.delete(id);
    if (this.jobs.size > 0) return;
    this.worker.unref();
    this.armIdle();
  }

  /** An idle thread gives its heap back: a worker between sessions holds none. */
  armIdle(): void {
    this.#idle = setTimeout(() => {
      this.onGone(this); // out of the pool first: no job is given to a thread that is ending
      void this.worker.terminate();
    }, IDLE_MS).unref();
  }

  post(m: ToThread): void {
    this.worker.postMessage(m);
  }
}

/**
 * Threads the pool may hold for a job of `kind`: OHBACKUP_ENGINE_THREADS when set (0: every job on the
 * calling thread, for a device short of memory), else one per core but the main thread's, at least one,
 * at most 3 (each costs its own V8 heap). On 2 busy cores none made the worker some 70 MiB smaller at its
 * peak but full backups slower, and a second one made them no faster and the worker ~20 MiB bigger at its
 * peak; a restore's applies and a store's staging take a second one on 2 cores (docs/design/performance.md). Jobs go to the
 * least busy thread, several share one.
 */
export function poolSize(kind: JobKind): number {
  const set = process.env.OHBACKUP_ENGINE_THREADS;
  if (set !== undefined && /^\d+$/.test(set.trim())) return Math.min(Number(set), 8);
  const cores = availableParallelism();
  const size = Math.max(1, Math.min(cores - 1, 3));
  // Staging runs in the command's process, beside no pack: it may take both cores too.
  return kind === 'pack' ? size : Math.max(size, Math.min(cores, 2));
}
/** A thread idle this long ends. */
const IDLE_MS = 10_000;
const pool: EngineThread[] = [];
let nextId = 1;

function startThread(): EngineThread {
  const t = new EngineThread((gone) => {
    const i = pool.indexOf(gone);
    if (i >= 0) pool.splice(i, 1); // a thread that died is replaced by the next job's
  });
  pool.push(t);
  return t;
}

function pickThread(kind: JobKind): EngineThread {
  const size = poolSize(kind);
  // A pack uses only the threads a pack may start: a restore's extra one, idle until it ends, is not its.
  const usable = pool.slice(0, size);
  if (usable.length < size && usable.every((t) => t.jobs.size > 0)) return startThread();
  return usable.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
}

/**
 * Starts the threads jobs of `kind` may take, when the pool lacks them, so that a thread's start (some 0.2 s: its
 * V8 isolate and the engine's modules) overlaps a session's set-up instead of delaying its first job. Called as a
 * session's bundles are checked; threads no job comes to end after IDLE_MS, as idle ones do.
 */
export function warmEngineThreads(kind: JobKind): void {
  if (!import.meta.url.endsWith('.js')) return; // the TypeScript sources run their jobs in place
  for (let n = pool.length; n < poolSize(kind); n++) startThread().armIdle();
}

/** Threads the pool holds now (a test's view: idle ones end). */
export function engineThreads(): number {
  return pool.length;
}

/**
 * Runs a pack or restore job on a pool thread. `onProgress` gets what the
 * engine reports; aborting `signal` aborts the job there, and the call then
 * rejects with the signal's reason, as the engine does on the main thread.
 */
export function runOffThread<K extends JobKind>(
  kind: K,
  opts: Jobs[K]['opts'],
  hooks: { onProgress?: (p: Jobs[K]['progress']) => void; signal?: AbortSignal } = {},
): Promise<Jobs[K]['result']> {
  const { signal } = hooks;
  if (signal?.aborted) return Promise.reject(signal.reason);
  // Run from the TypeScript sources (the tests' in-process workers), there is no built entry for a thread: run here.
  if (!import.meta.url.endsWith('.js') || poolSize(kind) === 0) return runJob(kind, opts, signal, hooks.onProgress);
  const thread = pickThread(kind);
  const id = nextId++;
  return new Promise<Jobs[K]['result']>((resolve, reject) => {
    const onAbort = () => thread.post({ type: 'abort', id });
    const cleanup = () => signal?.removeEventListener('abort', onAbort);
    thread.add(id, {
      onProgress: hooks.onProgress as ((p: unknown) => void) | undefined,
      resolve: (v) => {
        cleanup();
        resolve(v as Jobs[K]['result']);
      },
      reject: (e) => {
        cleanup();
        reject(signal?.aborted ? signal.reason : e);
      },
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    thread.post({ type: 'run', id, kind, opts });
  });
}
