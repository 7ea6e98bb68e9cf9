/**
 * ONE restore session from ONE backup set, without printing: for each bundle,
 * once it begins, ask a target for every file of its index (and the index
 * itself), copy the file into the writable fd the service hands back, and
 * publish the bundle when all are written. runRestore runs one per set of a
 * chain; the tests and the bench call it (or restoreFromSet) directly.
 */
import { close, copyFile, createReadStream, createWriteStream, existsSync, openSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { BusinessError } from '../../common/businessError.js';
import { codeForSystemError, describeCode, type ErrorInfo } from '../../common/errors.js';
import { INDEX_URI } from '../../common/manageIndex.js';
import type { BundleOutcome } from '../../common/session.js';
import { getClient } from '../connection.js';
import { toBusinessError } from '../failures.js';
import { SessionControl } from '../sessions/control.js';
import type { SessionOptions } from '../sessions/base.js';
import { SessionRestore } from '../sessions/restore.js';
import { SET_CAPABILITIES } from '../sets/layout.js';
import type { GeneralCallbacks } from '../types.js';
import { RUN_CONCURRENT_BUNDLES } from './setup.js';
import { BundleTally, errorOf, never, watchSessionClosed, whenAborted, type RunSummary } from './tally.js';

const closeFd = promisify(close);
const copy = promisify(copyFile);

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

export interface RestoreSessionOptions {
  /** The backup set folder. */
  from: string;
  /** Bundles to restore, each held by the set with its index. */
  bundles: string[];
  /** source → target bundle (app_mapping_relation). */
  map?: Record<string, string>;
  /** The `infos` of appendBundles as given (one per bundle, in `bundles` order), instead of those `map` makes. */
  infos?: string[];
  session?: SessionOptions;
  /** Default the tool library's connection. */
  client?: Client;
  onProgress?: (event: RestoreProgressEvent) => void;
  /** Only for the 'start' event: where the session restores to, and its place in a chain. */
  startDetails?: { to?: string; device?: string; step?: number; steps?: number };
  /** Aborting releases the session: running bundles are stopped, and the session returns as interrupted. */
  signal?: AbortSignal;
  /** Ends the wait too: the worker that serves the session stopped (workers/embedded.ts). */
  workerStopped?: Promise<BusinessError>;
  /** Extra callbacks, each called first in its callback (tests record order through them). */
  observe?: Partial<GeneralCallbacks>;
}

export interface RestoreSessionResult extends RunSummary {
  sessionId: string;
}

/** One session from one set: every bundle's outcome; a session failure is in `error`. */
export async function restoreSession(opts: RestoreSessionOptions): Promise<RestoreSessionResult> {
  const emit = opts.onProgress ?? (() => undefined);
  const files = new Map<string, string[]>();
  for (const b of opts.bundles) {
    const index = await readManageIndex(path.join(opts.from, b, INDEX_URI));
    files.set(b, [...index.files.map((f) => f.uri), INDEX_URI]);
  }
  const client = opts.client ?? opts.session?.client ?? (await getClient());
  const tally = new BundleTally(opts.bundles);
  // The session workflow closing before every bundle ended must end the wait too. Watched from its first
  // event on, when it surely exists; its completion by our own release is not a failure.
  let allEnded = false;
  let arm!: () => void;
  const armed = new Promise<void>((resolve) => (arm = resolve));
  const feeder = new SetFeeder(
    opts.from,
    files,
    tally,
    (e) => tally.settled || emit(e),
    {
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
    opts.observe,
  );
  const session = new SessionRestore(feeder.callbacks, { maxConcurrentBundles: RUN_CONCURRENT_BUNDLES, ...opts.session });
  feeder.session = session;
  const { sessionId } = session;
  const closed = watchSessionClosed(client, sessionId, armed).then((err) => (allEnded ? never : err));

  emit({ type: 'start', sessionId, bundles: opts.bundles, taskQueue: session.taskQueue, ...opts.startDetails, from: opts.from });
  const run = feeder.run(opts.infos ?? (opts.map && Object.keys(opts.map).length ? mappingInfos(opts.map, files.size) : undefined));
  run.catch(() => undefined);
  let error: ErrorInfo | undefined;
  let interrupted = false;
  const first = await Promise.race([
    run.then(
      () => ({ how: 'done' as const }),
      (e: unknown) => ({ how: 'failed' as const, err: toBusinessError(e) }),
    ),
    closed.then((err) => ({ how: 'failed' as const, err })),
    (opts.workerStopped ?? never).then((err) => ({ how: 'failed' as const, err })),
    whenAborted(opts.signal).then(() => ({ how: 'aborted' as const })),
  ]);
  if (first.how !== 'done') {
    if (first.how === 'aborted') {
      interrupted = true;
      emit({ type: 'notice', message: 'Interrupted: releasing the session (running bundles are stopped) ...' });
    } else {
      error = errorOf(first.err);
    }
    // Whatever still runs is stopped and the session completes; its result is the authoritative outcome
    // (a restore reports its bytes only at the end).
    try {
      tally.takeReleased((await (await SessionControl.of(sessionId)).release('tool')).bundles);
    } catch (err) {
      // Already completed (released, terminated), or never started: nothing more to stop.
      if (!error && !interrupted) error = errorOf(toBusinessError(err));
    }
  }
  return { sessionId, ...tally.closeOut({ error, interrupted }) };
}

/** restoreSession for callers that take a failed session as an exception (the tests, the bench). */
export async function restoreFromSet(opts: RestoreSessionOptions): Promise<{ sessionId: string; bundles: BundleOutcome[] }> {
  const r = await restoreSession(opts);
  if (r.error) throw new BusinessError(r.error.code, r.error.message);
  return { sessionId: r.sessionId, bundles: r.bundles };
}

/** Drives one SessionRestore from the set's files: asks for targets, copies, publishes; outcomes into the tally. */
class SetFeeder {
  session!: SessionRestore;
  private readonly pending = new Set<Promise<void>>();
  private failure: BusinessError | undefined;
  private finish!: () => void;
  private readonly allEnded = new Promise<void>((resolve) => (this.finish = resolve));
  readonly callbacks: GeneralCallbacks;

  constructor(
    private readonly from: string,
    private readonly files: Map<string, string[]>,
    private readonly tally: BundleTally,
    emit: (e: RestoreProgressEvent) => void,
    watch: Partial<GeneralCallbacks>,
    observe: Partial<GeneralCallbacks> = {},
  ) {
    const written = new Map<string, number>();
    const total = (bundleName: string) => files.get(bundleName)?.length ?? 0;
    this.callbacks = {
      onBundleBegin: (err, bundleName) => {
        observe.onBundleBegin?.(err, bundleName);
        watch.onBundleBegin?.(err, bundleName);
        if (err) return this.fail(bundleName, err);
        tally.begin(bundleName);
        emit({ type: 'begin', bundleName, total: total(bundleName) });
        for (const uri of files.get(bundleName) ?? [])
          this.track(this.session.getFileHandle({ bundleName, uri }).catch((e: BusinessError) => this.fail(bundleName, e)));
      },
      onFileReady: (err, file) => {
        observe.onFileReady?.(err, file);
        watch.onFileReady?.(err, file);
        if (err) return this.fail(file.bundleName, err);
        this.track(
          (async () => {
            try {
              await copyIntoFd(path.join(from, file.bundleName, file.uri), file.fd);
            } finally {
              await closeFd(file.fd);
            }
            const n = (written.get(file.bundleName) ?? 0) + 1;
            written.set(file.bundleName, n);
            tally.outcome(file.bundleName).files = n;
            emit({ type: 'file', bundleName: file.bundleName, files: n, total: total(file.bundleName) });
            if (n === total(file.bundleName)) await this.session.publishFile({ bundleName: file.bundleName, uri: '' });
          })().catch((e: unknown) => this.fail(file.bundleName, asBusinessError(e))),
        );
      },
      onResultReport: (bundleName, result) => {
        observe.onResultReport?.(bundleName, result);
        try {
          const r = JSON.parse(result) as { bytes?: number };
          if (typeof r.bytes === 'number') tally.outcome(bundleName).bytes = r.bytes;
        } catch {
          // a hook's own result string
        }
      },
      onProcess: (b, p) => observe.onProcess?.(b, p),
      onBundleEnd: (err, bundleName) => {
        observe.onBundleEnd?.(err, bundleName);
        watch.onBundleEnd?.(err, bundleName);
        if (err) this.fail(bundleName, err);
        emit({ type: 'end', outcome: tally.end(bundleName) });
      },
      onAllBundlesEnd: (err) => {
        observe.onAllBundlesEnd?.(err);
        watch.onAllBundlesEnd?.(err);
        if (err) this.failure = err;
        this.finish();
      },
      onBackupServiceDied: () => {
        observe.onBackupServiceDied?.();
        watch.onBackupServiceDied?.();
      },
    };
  }

  /** Appends the bundles, waits for their ends and the copies still running, then releases; throws a session failure. */
  async run(infos?: string[]): Promise<void> {
    // Opened synchronously: the append must be made in the constructor's turn to ride with the session's start
    // (update-with-start); an awaited open lets the start go out alone, and the append waits for its first task.
    const capsFd = openSync(path.join(this.from, SET_CAPABILITIES), 'r');
    try {
      await this.session.appendBundles(capsFd, [...this.files.keys()], infos);
    } finally {
      await closeFd(capsFd);
    }
    await this.allEnded;
    while (this.pending.size) await Promise.all([...this.pending]);
    await this.session.release();
    if (this.failure) throw this.failure;
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** A bundle that can no longer get all its files would wait for its publish until its deadline: end it now. */
  private fail(bundleName: string, err: BusinessError<unknown>): void {
    if (this.tally.fail(bundleName, errorOf(err))) this.session.cancel(bundleName);
  }
}

/** Copies a set file into a writable fd, in the kernel where it can (copy_file_range via /proc/self/fd). */
async function copyIntoFd(source: string, fd: number): Promise<void> {
  const viaProc = `/proc/self/fd/${fd}`;
  if (existsSync(viaProc)) return copy(source, viaProc);
  await pipeline(createReadStream(source), createWriteStream('', { fd, autoClose: false }));
}

/** The tool's own I/O failing (say, ENOSPC writing a file into its target) gets the reference's code. */
function asBusinessError(err: unknown): BusinessError<unknown> {
  if (err instanceof BusinessError) return err;
  const code = codeForSystemError(err);
  return new BusinessError(code, `${describeCode(code)}: ${err instanceof Error ? err.message : String(err)}`);
}

/** The broadcast info carrying app_mapping_relation, first of `count` infos (the rest empty objects). */
function mappingInfos(map: Record<string, string>, count: number): string[] {
  const detail = Object.entries(map).map(([source, target]) => ({ source, target }));
  const broadcast = JSON.stringify({ infos: [{ type: 'broadcast', details: [{ type: 'app_mapping_relation', detail }] }] });
  return [broadcast, ...Array.from({ length: count - 1 }, () => '{}')];
}
