/**
 * A whole backup run, without printing: checks, one backup (or incremental)
 * session into a new backup set, its summary written. `ohbackup backup`, the
 * scheduled-backup activity, the demo and the bench all run this.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { readManifest } from '../../engine/formats/manifest.js';
import { BusinessError } from '../../common/businessError.js';
import { CapabilitiesSchema, type Capabilities } from '../../common/capabilities.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { bundlePaths } from '../../common/device.js';
import { INDEX_URI } from '../../common/manageIndex.js';
import { eventsQuery, outcomesQuery } from '../../common/messages.js';
import { readSettings } from '../../config/env.js';
import { processAlive, runningDevServer } from '../../engine/stateLock.js';
import type { BundleOutcome } from '../../common/session.js';
import * as backup from '../backup.js';
import { deviceQueue, taskQueue } from '../connection.js';
import { SessionEndedElsewhere, toBusinessError } from '../failures.js';
import { SET_CAPABILITIES, SET_CURSOR, SET_MANIFEST, SET_SUMMARY, readSetInfo, type BackupSetSummary, type SetInfo } from '../sets/layout.js';
import { manifestFromIndex } from '../sets/manifest.js';
import { BackupSetWriter } from '../sets/writer.js';
import type { GeneralCallbacks, IncrementalBackupData } from '../types.js';
import { RUN_CONCURRENT_BUNDLES, SetupError, connect, readDeviceCapabilities, sessionUiUrl, waitForWorkers } from './setup.js';
import { BundleTally, errorOf, watchSessionClosed, whenAborted, type RunSummary } from './tally.js';

export type BackupProgressEvent =
  /** `kind` 'incremental' for an IncrementalBackupSession; `base`: the base set, when there is one. */
  | { type: 'start'; sessionId: string; bundles: string[]; kind?: 'backup' | 'incremental'; base?: string; attached?: boolean }
  /** `estimatedBytes`: the bundle's data size from the capability file, when it lists the bundle. */
  | { type: 'begin'; bundleName: string; estimatedBytes?: number }
  | { type: 'file'; bundleName: string; files: number; bytes: number }
  | { type: 'end'; outcome: BundleOutcome }
  | { type: 'notice'; message: string };

export interface RunBackupOptions {
  /** The backup set folder: must be new or empty. */
  out: string;
  /** Bundles to back up; none = every bundle the device reports as backup-able. */
  bundles?: string[];
  /** Files per second handed over: the session's rate (an attached session's bundles are told as they begin, updateSendRate). */
  rate?: number;
  /** Each bundle's deadline in ms, set as it begins (updateTimer); default the session's (15 minutes). */
  bundleTimeoutMs?: number;
  /**
   * An IncrementalBackupSession: each bundle's new full manifest is kept in the
   * set (`<bundle>/manifest.jsonl`). Without `base`, every bundle is backed up in full.
   */
  incremental?: boolean;
  /**
   * The base set (implies `incremental`): each bundle it holds completely, with
   * its manifest, is backed up as an increment since the base's time; the others in full.
   */
  base?: string;
  /**
   * Re-attach to this running session (a run of it stopped: killed, crashed)
   * and complete its set in `out`, the unfinished set it wrote: the run
   * resumes after the last file the set holds (its cursor, `<out>/.cursor`).
   * Kind, bundles and base are the set's; `bundles`, `incremental` and `base` are ignored.
   */
  attach?: string;
  onProgress?: (event: BackupProgressEvent) => void;
  /** Aborting releases the session: running bundles are stopped, and the run returns as interrupted. */
  signal?: AbortSignal;
  /** The Temporal client to use (a scheduled run uses its activity's); default the tool library's connection. */
  client?: Client;
  /** The device's task queue; default the tool library's (`configure`, OHBACKUP_TASK_QUEUE). */
  taskQueue?: string;
  /** The session's tool timeout (SessionOptions.toolTimeoutMs): a run whose process is gone this long ends its session. */
  toolTimeoutMs?: number;
}

export interface BackupRunResult extends RunSummary {
  sessionId: string;
  namespace: string;
  uiUrl: string;
  out: string;
  kind: 'backup' | 'incremental';
  /** The base set (absolute), for an increment. */
  base?: string;
}

type Emit = (event: BackupProgressEvent) => void;
type BaseSet = SetInfo & { time: number };

export async function runBackup(opts: RunBackupOptions): Promise<BackupRunResult> {
  const emit: Emit = opts.onProgress ?? (() => undefined);
  const resumed = opts.attach !== undefined ? readUnfinishedSet(opts.out, opts.attach) : undefined;
  const out = resumed?.dir ?? checkOut(opts.out);
  const base = resumed ? resumed.base : opts.base !== undefined ? readBase(opts.base) : undefined;
  const kind = resumed?.summary.kind ?? (opts.incremental || base ? ('incremental' as const) : ('backup' as const));

  const client = opts.client ?? (await connect());
  const queue = opts.taskQueue ?? taskQueue();
  const namespace = client.options.namespace;
  await waitForWorkers(client, queue);
  const named = !resumed && opts.bundles?.length ? [...new Set(opts.bundles)] : undefined;
  const readCaps = (only?: string[]) => readDeviceCapabilities(client, opts.taskQueue ? queue : deviceQueue(), only);
  // Bundles named: their capability file alone (the device's others are not walked for their sizes), and only the set
  // and the estimate need it, so it is read while the session starts. A resumed set that lacks it (killed before it came) reads it again.
  const capsRead = named ? readCaps(named) : undefined;
  capsRead?.catch(() => undefined); // Awaited later; not an unhandled rejection meanwhile.
  const caps = capsRead ? undefined : (resumed?.caps ?? (await readCaps(resumed?.summary.bundles.map((b) => b.bundleName))));
  const names = resumed ? resumed.summary.bundles.map((b) => b.bundleName) : (named ?? caps!.bundleInfos.filter((b) => b.allToBackup).map((b) => b.name));
  if (!names.length) throw new SetupError('The device reports no backup-able bundles: nothing to back up.', 'failed');
  // A refusal before the session waits for the read: its file is unlinked once read, so the device's transfer folder keeps nothing of the run.
  const beforeSession = async (step: () => void | Promise<void>) => {
    try {
      await step();
    } catch (err) {
      await capsRead?.catch(() => undefined);
      throw err;
    }
  };
  await beforeSession(() => checkOutsideData(out, names));

  const set = new BackupSetWriter(out);
  const startedAt = resumed ? resumed.summary.time * 1000 : Date.now();
  const sessionId = resumed?.summary.sessionId ?? `ohbackup-${kind}-${randomUUID()}`;
  const setSummary = (bundles: BundleOutcome[], state: Pick<BackupSetSummary, 'complete' | 'why' | 'failed' | 'writer'>): BackupSetSummary => ({
    version: 1,
    sessionId,
    kind,
    createdAt: resumed?.summary.createdAt ?? new Date(startedAt).toISOString(),
    time: Math.floor(startedAt / 1000),
    ...(base ? { base: base.dir, baseRelative: path.relative(out, base.dir) } : {}),
    bundles,
    ...state,
  });
  const writer = { pid: process.pid, host: os.hostname() };
  const unfinished = setSummary(
    names.map((bundleName) => ({ bundleName, state: 'pending', files: 0, bytes: 0 })),
    { complete: false, why: `unfinished: the backup was still running (pid ${writer.pid} on ${writer.host}) or stopped before it ended`, writer },
  );
  if (resumed) await set.writeJson(SET_SUMMARY, { ...resumed.summary, writer });
  else
    await beforeSession(async () => {
      // The exclusive create is the claim on the folder: a second backup into it is refused here, before any session starts.
      await set.init();
      if (!(await set.claim(SET_SUMMARY, unfinished))) throw new SetupError(`--out ${out} is being written by another backup.`, 'usage');
    });
  const estimate = new Map<string, number>();
  const keepCaps = async (c: Capabilities) => {
    for (const b of c.bundleInfos) estimate.set(b.name, b.spaceOccupied);
    if (!resumed?.caps) await set.writeJson(SET_CAPABILITIES, c);
  };
  if (caps) await keepCaps(caps);
  // Settles with what failed (the read, or writing it into the set): the run fails with it, as it did before any session started.
  const capsFailed = capsRead?.then(keepCaps).then(
    () => undefined,
    (err: unknown) => ({ err }),
  );
  const tally = new BundleTally(names);
  let allEnded!: (err: BusinessError | undefined) => void;
  const ended = new Promise<BusinessError | undefined>((resolve) => (allEnded = resolve));
  // A new session takes the rate as its own (sessionOptions): only an attached one is told per bundle.
  const callbacks = backupCallbacks({
    tally,
    set,
    kind,
    rate: resumed ? opts.rate : undefined,
    bundleTimeoutMs: opts.bundleTimeoutMs,
    estimate,
    emit,
    onAllEnded: allEnded,
  });

  // Every run keeps a cursor in its set: `--attach` resumes after the last file the set holds.
  const cursorFile = path.join(out, SET_CURSOR);
  const sessionOptions = {
    taskQueue: queue,
    target: `backup set ${out}`,
    cursorFile,
    maxConcurrentBundles: RUN_CONCURRENT_BUNDLES,
    ...(opts.rate !== undefined ? { sendRate: opts.rate } : {}),
    ...(opts.client ? { client: opts.client } : {}),
    ...(opts.toolTimeoutMs !== undefined ? { toolTimeoutMs: opts.toolTimeoutMs } : {}),
  };
  const Session = kind === 'incremental' ? backup.IncrementalBackupSession : backup.SessionBackup;
  let session: backup.SessionBackup | backup.IncrementalBackupSession;
  if (resumed) {
    await seedFromSession(client, sessionId, out, tally, cursorFile, allEnded).catch((err: unknown) => {
      throw new SetupError(`--attach ${sessionId}: ${toBusinessError(err).message}`, 'failed');
    });
    session = Session.attach(sessionId, callbacks, sessionOptions);
  } else session = new Session(callbacks, { ...sessionOptions, sessionId });
  emit({ type: 'start', sessionId, bundles: names, kind, ...(base ? { base: base.dir } : {}), ...(resumed ? { attached: true } : {}) });
  const waited = await appendAndWait(session, {
    client,
    names,
    base: resumed ? undefined : base,
    attached: !!resumed,
    emit,
    ended,
    stopped: capsFailed,
    signal: opts.signal,
  });
  const { interrupted } = waited;
  // The bundles may all have ended before the capability file came; an interrupted run does not wait for it.
  const setupFailure = waited.stopped ?? (interrupted || !capsFailed ? undefined : (await capsFailed)?.err);
  const finished = await finishSet(session, set, !!resumed);
  const endedElsewhere = waited.endedElsewhere ?? finished.endedElsewhere;
  if (endedElsewhere) emit({ type: 'notice', message: `The session was ${endedElsewhere}: the set holds what was handed over until then.` });
  const error = finished.error ?? waited.error ?? (setupFailure !== undefined ? errorOf(toBusinessError(setupFailure)) : undefined);

  const summary = tally.closeOut({ error, interrupted, endedElsewhere });
  const failed = summary.bundles.filter((b) => b.state !== 'done').map((b) => b.bundleName);
  const why = interrupted
    ? 'interrupted: the session was released before every bundle ended'
    : setupFailure !== undefined
      ? `the device's capability file could not be read or kept: ${(setupFailure as Error).message ?? String(setupFailure)}`
      : endedElsewhere && failed.length
        ? `the session was ${endedElsewhere} before every bundle ended`
        : error
          ? `the session failed: ${error.message}`
          : failed.length
            ? `not every bundle was backed up: ${failed.join(', ')}`
            : undefined;
  await set.writeJson(SET_SUMMARY, setSummary(summary.bundles, why ? { complete: false, why, failed } : { complete: true }));
  set.removeQuietly(SET_CURSOR);
  // The same failure, message and code, as when the capability file was read before the session.
  if (setupFailure !== undefined) throw setupFailure;
  return { sessionId, namespace, uiUrl: sessionUiUrl(namespace, sessionId), out, kind, ...(base ? { base: base.dir } : {}), ...summary };
}

/** `--out`: a new or empty folder. Mixing two sessions' files in one folder would make a set that verifies against neither. */
function checkOut(dir: string): string {
  const out = path.resolve(dir);
  const existing = statSync(out, { throwIfNoEntry: false });
  if (existing && (!existing.isDirectory() || readdirSync(out).length > 0)) {
    const unfinished = unfinishedSessionOf(out);
    const hint = unfinished
      ? ` It holds the unfinished set of session ${unfinished}: \`ohbackup backup --attach ${unfinished} --out ${out}\` completes it.`
      : '';
    throw new SetupError(`--out ${out} must be a new or empty folder.${hint}`, 'usage');
  }
  return out;
}

/** The session of the unfinished set in `dir`, if it holds one. */
function unfinishedSessionOf(dir: string): string | undefined {
  try {
    const summary = JSON.parse(readFileSync(path.join(dir, SET_SUMMARY), 'utf8')) as Partial<BackupSetSummary>;
    return summary.complete === false && summary.writer && typeof summary.sessionId === 'string' ? summary.sessionId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `--out` inside a bundle's own data/ would back the set up into itself (and a
 * restore would replace it). Known when the device's data root is: this
 * process's OHBACKUP_DATA_ROOT, or the one a local `ohbackup dev` serves.
 */
function checkOutsideData(out: string, names: string[]): void {
  const roots = new Set([readSettings().dataRoot, runningDevServer(readSettings().stateDir)?.dataRoot].filter((r): r is string => !!r));
  const real = realOrSelf(out);
  for (const root of roots) {
    for (const name of names) {
      const data = realOrSelf(bundlePaths(root, name).data);
      const rel = path.relative(data, real);
      if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel)))
        throw new SetupError(`--out ${out} is inside the data of ${name} (${data}), which this backup reads: choose a folder outside it.`, 'usage');
    }
  }
}

/** The real path of `p`, or of its nearest existing parent joined with the rest. */
function realOrSelf(p: string): string {
  const abs = path.resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(realOrSelf(parent), path.basename(abs));
  }
}

interface UnfinishedSet {
  dir: string;
  summary: BackupSetSummary;
  caps?: Capabilities;
  base?: BaseSet;
}

/** `--attach ID --out DIR`: DIR is the unfinished set of session ID, and no live process writes it. */
function readUnfinishedSet(dir: string, sessionId: string): UnfinishedSet {
  const out = path.resolve(dir);
  const usage = (why: string) => new SetupError(`--attach ${sessionId} --out ${out}: ${why}`, 'usage');
  let summary: BackupSetSummary;
  let caps: Capabilities | undefined;
  try {
    summary = JSON.parse(readFileSync(path.join(out, SET_SUMMARY), 'utf8')) as BackupSetSummary;
    // Absent when the run was killed before the device's file came (it is read while the session starts): read again.
    const capsFile = path.join(out, SET_CAPABILITIES);
    caps = existsSync(capsFile) ? CapabilitiesSchema.parse(JSON.parse(readFileSync(capsFile, 'utf8'))) : undefined;
  } catch (err) {
    throw usage(`it is not the set of a backup that was started (${(err as Error).message}).`);
  }
  if (summary.sessionId !== sessionId) throw usage(`it is the set of session ${summary.sessionId}.`);
  if (summary.complete !== false || !summary.writer) throw usage('the backup of this set has ended already.');
  const { pid, host } = summary.writer;
  if (host === os.hostname() && pid !== process.pid && processAlive(pid)) throw usage(`process ${pid} is still writing it.`);
  const base = summary.base !== undefined ? readBase(summary.base) : undefined;
  return { dir: out, summary, ...(caps ? { caps } : {}), ...(base ? { base } : {}) };
}

/**
 * Before re-attaching: the session's view of each bundle (begun, ended), the
 * files the set already holds, and, when every bundle ended and no event is
 * left past the cursor, the end of the wait (its onAllBundlesEnd was delivered).
 */
async function seedFromSession(
  client: Client,
  sessionId: string,
  out: string,
  tally: BundleTally,
  cursorFile: string,
  allEnded: (err: BusinessError | undefined) => void,
): Promise<void> {
  const handle = client.workflow.getHandle(sessionId);
  const { status } = await handle.describe();
  // Ended (released, abandoned, terminated): the files it had not handed over are gone with it.
  if (status.name !== 'RUNNING') throw new Error(`the session has ended (${status.name.toLowerCase()}): its set cannot be completed`);
  const outcomes = await handle.query(outcomesQuery);
  for (const o of outcomes) {
    const t = tally.outcome(o.bundleName);
    Object.assign(t, countHeld(out, o.bundleName));
    if (o.state === 'running') tally.begin(o.bundleName);
    else if (o.state !== 'pending') {
      t.state = o.state;
      if (o.error) t.error = o.error;
    }
  }
  const cursor = Number.parseInt(readFileSync(cursorFile, { encoding: 'utf8', flag: 'a+' }), 10) || 0;
  const page = await handle.query(eventsQuery, Math.max(cursor, 0), 1);
  if (page.lastSeq <= cursor && outcomes.every((o) => o.state !== 'pending' && o.state !== 'running')) allEnded(undefined);
}

/** The files (and bytes) of a bundle the set holds: every name under `<set>/<bundle>/` but its manifest and partial copies. */
function countHeld(out: string, bundleName: string): { files: number; bytes: number } {
  const dir = path.join(out, bundleName);
  let files = 0;
  let bytes = 0;
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    if (name === SET_MANIFEST || name.endsWith('.partial')) continue;
    files += 1;
    bytes += statSync(path.join(dir, name)).size;
  }
  return { files, bytes };
}

/** `--base SET`: a readable backup set with a time, or a usage error. */
function readBase(dir: string): BaseSet {
  if (dir.trim() === '') throw new SetupError('--base needs the folder of an earlier backup set.', 'usage');
  let info: SetInfo;
  try {
    info = readSetInfo(dir);
  } catch (err) {
    throw new SetupError(`--base ${(err as Error).message}.`, 'usage');
  }
  if (info.time === undefined) throw new SetupError(`--base ${info.dir}: its ${SET_SUMMARY} has neither a time nor a createdAt: it cannot be a base.`, 'usage');
  return { ...info, time: info.time };
}

/** The session's callbacks: each handed-over file into the set, each bundle's outcome into the tally. */
function backupCallbacks(run: {
  tally: BundleTally;
  set: BackupSetWriter;
  kind: 'backup' | 'incremental';
  rate?: number;
  bundleTimeoutMs?: number;
  estimate: Map<string, number>;
  emit: Emit;
  onAllEnded: (err: BusinessError | undefined) => void;
}): GeneralCallbacks {
  const { tally, set, emit } = run;
  const lostFiles = new Set<string>();
  return {
    onBundleBegin(err, name) {
      // On an error onBundleEnd follows and reports the bundle.
      if (err) return void tally.fail(name, errorOf(err));
      tally.begin(name);
      emit({ type: 'begin', bundleName: name, estimatedBytes: run.estimate.get(name) });
      if (run.rate !== undefined && !backup.updateSendRate(name, run.rate)) emit({ type: 'notice', message: `${name}: the send rate could not be set` });
      if (run.bundleTimeoutMs !== undefined && !backup.updateTimer(name, run.bundleTimeoutMs))
        emit({ type: 'notice', message: `${name}: the deadline could not be set` });
    },
    onFileReady(err, file) {
      // A file that could not be handed over leaves the bundle's set incomplete, whatever its onBundleEnd says.
      const lost = (e: BusinessError) => {
        tally.outcome(file.bundleName).error ??= errorOf(e);
        lostFiles.add(file.bundleName);
        emit({ type: 'notice', message: `${file.bundleName}: ${file.uri} was not handed over: ${e.message}` });
      };
      // Incremental: every file brings an fd of the bundle's new full manifest; the one with the index (always last) is kept, the others closed.
      const manifestFd = file.manifestFd !== undefined && file.manifestFd >= 0 ? file.manifestFd : undefined;
      const keepManifest = run.kind === 'incremental' && !err && file.uri === INDEX_URI;
      if (manifestFd !== undefined && !keepManifest) closeQuietly(manifestFd);
      if (err) return lost(err);
      let size: number;
      try {
        size = fstatSync(file.fd).size;
      } catch (e) {
        closeQuietly(file.fd);
        if (keepManifest && manifestFd !== undefined) closeQuietly(manifestFd);
        return lost(new BusinessError(ErrorCode.IO_ERROR, `I/O error: ${(e as Error).message}`));
      }
      // In the set before the callback returns, and so before the cursor moves past it: a run killed now resumes with the next file.
      let again: boolean;
      try {
        again = set.keepNow(file.bundleName, file.uri, file.fd);
      } catch (e) {
        if (keepManifest && manifestFd !== undefined) closeQuietly(manifestFd);
        return lost(new BusinessError(ErrorCode.IO_ERROR, `I/O error: writing the backup set: ${(e as Error).message}`));
      }
      try {
        if (keepManifest && manifestFd !== undefined) set.keepNow(file.bundleName, SET_MANIFEST, manifestFd);
      } catch (e) {
        return lost(new BusinessError(ErrorCode.IO_ERROR, `I/O error: writing the backup set: ${(e as Error).message}`));
      }
      const o = tally.outcome(file.bundleName);
      // A file delivered again after a re-attach (the run was killed between its copy and its cursor) is counted once.
      if (!again) {
        o.bytes += size;
        o.files += 1;
      }
      if (keepManifest && manifestFd === undefined) {
        emit({ type: 'notice', message: `${file.bundleName}: no manifest came with its files; an increment based on this set backs it up in full` });
      }
      emit({ type: 'file', bundleName: file.bundleName, files: o.files, bytes: o.bytes });
    },
    onBundleEnd(err, name) {
      if (!err && lostFiles.has(name)) tally.fail(name, tally.outcome(name).error!);
      emit({ type: 'end', outcome: tally.end(name, err ? errorOf(err) : undefined, true) });
    },
    onAllBundlesEnd: (err) => run.onAllEnded(err),
    onBackupServiceDied() {
      emit({ type: 'notice', message: 'The backup service is unreachable (no worker serves the session); the session continues once one is back ...' });
    },
  };
}
/**
 * Appends the bundles, then waits for them all to end; besides the normal end,
 * the wait stops when the session workflow closes under us (e.g. terminated in
 * the UI) or the run is interrupted.
 */
async function appendAndWait(
  session: backup.SessionBackup | backup.IncrementalBackupSession,
  wait: {
    client: Client;
    names: string[];
    base?: BaseSet;
    /** Re-attached: the bundles were appended by the run that started the session. */
    attached: boolean;
    emit: Emit;
    ended: Promise<BusinessError | undefined>;
    /** Settles with what failed beside the session (its capability file), when something did: the wait stops. */
    stopped?: Promise<{ err: unknown } | undefined>;
    signal?: AbortSignal;
  },
): Promise<{ error?: ErrorInfo; interrupted: boolean; endedElsewhere?: string; stopped?: unknown }> {
  try {
    if (wait.attached) {
      // Appended by the run that started the session.
    } else if (session instanceof backup.IncrementalBackupSession) await appendIncrement(session, wait.names, wait.base, wait.emit);
    else await session.appendBundles(wait.names);
    const first = await Promise.race([
      wait.ended.then((err) => ({ how: 'ended' as const, err })),
      watchSessionClosed(wait.client, session.sessionId).then((err) => ({ how: 'closed' as const, err })),
      whenAborted(wait.signal).then(() => ({ how: 'aborted' as const, err: undefined })),
      ...(wait.stopped ? [wait.stopped.then((s) => (s ? { how: 'stopped' as const, err: s.err } : new Promise<never>(() => undefined)))] : []),
    ]);
    if (first.how === 'stopped') return { interrupted: false, stopped: first.err };
    if (first.how === 'aborted') {
      wait.emit({ type: 'notice', message: 'Interrupted: releasing the session (running bundles are stopped) ...' });
      return { interrupted: true };
    }
    if (first.err instanceof SessionEndedElsewhere) return { interrupted: false, endedElsewhere: first.err.how };
    return { error: first.err && errorOf(first.err), interrupted: false };
  } catch (err) {
    return { error: errorOf(toBusinessError(err)), interrupted: false };
  }
}

/**
 * Every copy into the set done, and the session released (which also delivers
 * its trailing events: the ends of stopped bundles). A session another client
 * released, or that its tool timeout abandoned, is no error of the run: it says how it ended.
 * The set's flush to disk runs during the release's round trips (the release
 * needs nothing of it); what the trailing events brought is flushed after.
 */
async function finishSet(
  session: { release(): Promise<void> },
  set: BackupSetWriter,
  resumed: boolean,
): Promise<{ error?: ErrorInfo; endedElsewhere?: string }> {
  let error: ErrorInfo | undefined;
  let endedElsewhere: string | undefined;
  try {
    await set.flush();
  } catch (err) {
    error = { code: ErrorCode.IO_ERROR, message: `Writing the backup set failed: ${(err as Error).message}` };
  }
  // Its failure is the run's, after the release (a second fsync may not see an error the first reported).
  const flushing = set.makeDurable().then(
    () => undefined,
    (err: Error) => err,
  );
  try {
    await session.release();
    await set.flush();
  } catch (err) {
    if (err instanceof SessionEndedElsewhere) endedElsewhere = err.how;
    else error ??= errorOf(toBusinessError(err));
    await set.flush().catch(() => undefined);
  }
  const flushFailure = await flushing;
  try {
    // On disk before the summary can say complete: a power cut after the run reported done takes nothing back.
    await set.makeDurable({ everything: resumed });
    if (flushFailure) throw flushFailure;
  } catch (err) {
    error ??= { code: ErrorCode.IO_ERROR, message: `Writing the backup set to disk failed: ${(err as Error).message}` };
  }
  return { error, endedElsewhere };
}

/**
 * Appends every bundle to the incremental session in one call: as an
 * increment of the base when the base holds it completely with a valid
 * manifest (an fd on `<base>/<bundle>/manifest.jsonl`, closed once the append
 * has read it), else in full (time 0, fd -1).
 */
async function appendIncrement(session: backup.IncrementalBackupSession, names: string[], base: BaseSet | undefined, emit: Emit): Promise<void> {
  const data: IncrementalBackupData[] = [];
  const fds: number[] = [];
  // Manifests derived from a plain set's indexes live here until the append has read them.
  const scratch = base ? mkdtempSync(path.join(os.tmpdir(), 'ohbackup-base-')) : undefined;
  try {
    for (const bundleName of names) {
      const manifest = base ? await baseManifest(base, bundleName, scratch!, emit) : undefined;
      if (manifest === undefined) {
        data.push({ bundleName, lastIncrementalTime: 0, manifestFd: -1 });
        continue;
      }
      const fd = openSync(manifest, 'r');
      fds.push(fd);
      data.push({ bundleName, lastIncrementalTime: base!.time, manifestFd: fd });
    }
    await session.appendBundles(data);
  } finally {
    for (const fd of fds) closeQuietly(fd);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * The base's manifest of `bundleName` when it can serve as the base of an
 * increment; else undefined (and a notice why). A set without one (a plain
 * backup) has it derived from its index into `scratch`.
 */
async function baseManifest(base: BaseSet, bundleName: string, scratch: string, emit: Emit): Promise<string | undefined> {
  const full = (why: string) => {
    emit({ type: 'notice', message: `${bundleName}: ${why}: backed up in full` });
    return undefined;
  };
  if (!base.done.includes(bundleName)) return full('the base set does not hold it completely');
  const file = path.join(base.dir, bundleName, SET_MANIFEST);
  if (!statSync(file, { throwIfNoEntry: false })?.isFile()) {
    try {
      // Made here from the checked index, every entry checked as it was written: not read back to be checked again.
      return await manifestFromIndex(base, bundleName, path.join(scratch, `${bundleName}.${SET_MANIFEST}`));
    } catch (err) {
      return full(`the base set has no ${SET_MANIFEST} for it, and its index cannot stand in (${(err as Error).message})`);
    }
  }
  try {
    const { header } = await readManifest(file);
    if (header.bundleName !== bundleName) return full(`the base set's ${SET_MANIFEST} for it is the manifest of ${header.bundleName}`);
  } catch (err) {
    return full(`the base set's ${SET_MANIFEST} for it is not valid (${(err as Error).message})`);
  }
  return file;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already unusable; nothing more to release.
  }
}
