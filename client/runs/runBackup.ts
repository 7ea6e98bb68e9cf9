/**
 * A whole backup run, without printing: checks, one backup (or incremental)
 * session into a new backup set, its summary written. `ohbackup backup`, the
 * scheduled-backup activity, the demo and the bench all run this.
 */
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { readManifest } from '../../engine/formats/manifest.js';
import { BusinessError } from '../../common/businessError.js';
import { CapabilitiesSchema, type Capabilities } from '../../common/capabilities.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { INDEX_URI } from '../../common/manageIndex.js';
import type { BundleOutcome } from '../../common/session.js';
import * as backup from '../backup.js';
import { openCapabilities } from '../capabilities.js';
import { deviceQueue, taskQueue } from '../connection.js';
import { toBusinessError } from '../failures.js';
import { SET_CAPABILITIES, SET_MANIFEST, SET_SUMMARY, readSetInfo, type BackupSetSummary, type SetInfo } from '../sets/layout.js';
import { BackupSetWriter } from '../sets/writer.js';
import type { GeneralCallbacks, IncrementalBackupData } from '../types.js';
import { SetupError, connect, sessionUiUrl, waitForWorkers } from './setup.js';
import { BundleTally, errorOf, watchSessionClosed, whenAborted, type RunSummary } from './tally.js';

export type BackupProgressEvent =
  /** `kind` 'incremental' for an IncrementalBackupSession; `base`: the base set, when there is one. */
  | { type: 'start'; sessionId: string; bundles: string[]; kind?: 'backup' | 'incremental'; base?: string }
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
  /** Files per second handed over, set on each bundle as it begins (updateSendRate). */
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
  onProgress?: (event: BackupProgressEvent) => void;
  /** Aborting releases the session: running bundles are stopped, and the run returns as interrupted. */
  signal?: AbortSignal;
  /** The Temporal client to use (a scheduled run uses its activity's); default the tool library's connection. */
  client?: Client;
  /** The device's task queue; default the tool library's (`configure`, OHBACKUP_TASK_QUEUE). */
  taskQueue?: string;
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
  const out = checkOut(opts.out);
  const base = opts.base !== undefined ? readBase(opts.base) : undefined;
  const kind = opts.incremental || base ? ('incremental' as const) : ('backup' as const);

  const client = opts.client ?? (await connect());
  const queue = opts.taskQueue ?? taskQueue();
  const namespace = client.options.namespace;
  await waitForWorkers(client, queue);
  const caps = await readCapabilities(client, opts.taskQueue ? queue : deviceQueue());
  const names = opts.bundles?.length ? [...new Set(opts.bundles)] : caps.bundleInfos.filter((b) => b.allToBackup).map((b) => b.name);
  if (!names.length) throw new SetupError('The device reports no backup-able bundles: nothing to back up.', 'failed');

  const set = new BackupSetWriter(out);
  await set.init();
  await set.writeJson(SET_CAPABILITIES, caps);
  const startedAt = Date.now();
  const tally = new BundleTally(names);
  const estimate = new Map(caps.bundleInfos.map((b) => [b.name, b.spaceOccupied]));
  let allEnded!: (err: BusinessError | undefined) => void;
  const ended = new Promise<BusinessError | undefined>((resolve) => (allEnded = resolve));
  const callbacks = backupCallbacks({ tally, set, kind, rate: opts.rate, bundleTimeoutMs: opts.bundleTimeoutMs, estimate, emit, onAllEnded: allEnded });

  const sessionOptions = { taskQueue: queue, ...(opts.client ? { client: opts.client } : {}) };
  const session = kind === 'incremental' ? new backup.IncrementalBackupSession(callbacks, sessionOptions) : new backup.SessionBackup(callbacks, sessionOptions);
  const { sessionId } = session;
  emit({ type: 'start', sessionId, bundles: names, kind, ...(base ? { base: base.dir } : {}) });
  const waited = await appendAndWait(session, { client, names, base, emit, ended, signal: opts.signal });
  const { interrupted } = waited;
  const error = (await finishSet(session, set)) ?? waited.error;

  const summary = tally.closeOut({ error, interrupted });
  const setSummary: BackupSetSummary = {
    version: 1,
    sessionId,
    kind,
    createdAt: new Date(startedAt).toISOString(),
    time: Math.floor(startedAt / 1000),
    ...(base ? { base: base.dir, baseRelative: path.relative(out, base.dir) } : {}),
    bundles: summary.bundles,
  };
  await set.writeJson(SET_SUMMARY, setSummary);
  return { sessionId, namespace, uiUrl: sessionUiUrl(namespace, sessionId), out, kind, ...(base ? { base: base.dir } : {}), ...summary };
}

/** `--out`: a new or empty folder. Mixing two sessions' files in one folder would make a set that verifies against neither. */
function checkOut(dir: string): string {
  const out = path.resolve(dir);
  const existing = statSync(out, { throwIfNoEntry: false });
  if (existing && (!existing.isDirectory() || readdirSync(out).length > 0)) throw new SetupError(`--out ${out} must be a new or empty folder.`, 'usage');
  return out;
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

/** getLocalCapabilities: the fd of the device's capability file; we read it and close it. */
async function readCapabilities(client: Client, queue: string): Promise<Capabilities> {
  const { fd } = await openCapabilities(client, queue).catch((err: unknown) => {
    throw toBusinessError(err);
  });
  let text: string;
  try {
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  const parsed = CapabilitiesSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new SetupError(`The device's capability file is not valid: ${parsed.error.issues[0]?.message}`, 'failed');
  return parsed.data;
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
      const o = tally.outcome(file.bundleName);
      o.bytes += size;
      o.files += 1;
      set.keep(file.bundleName, file.uri, file.fd);
      if (keepManifest) {
        if (manifestFd !== undefined) set.keep(file.bundleName, SET_MANIFEST, manifestFd);
        else emit({ type: 'notice', message: `${file.bundleName}: no manifest came with its files; an increment based on this set backs it up in full` });
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
  wait: { client: Client; names: string[]; base?: BaseSet; emit: Emit; ended: Promise<BusinessError | undefined>; signal?: AbortSignal },
): Promise<{ error?: ErrorInfo; interrupted: boolean }> {
  try {
    if (session instanceof backup.IncrementalBackupSession) await appendIncrement(session, wait.names, wait.base, wait.emit);
    else await session.appendBundles(wait.names);
    const first = await Promise.race([
      wait.ended.then((err) => ({ how: 'ended' as const, err })),
      watchSessionClosed(wait.client, session.sessionId).then((err) => ({ how: 'closed' as const, err })),
      whenAborted(wait.signal).then(() => ({ how: 'aborted' as const, err: undefined })),
    ]);
    if (first.how === 'aborted') {
      wait.emit({ type: 'notice', message: 'Interrupted: releasing the session (running bundles are stopped) ...' });
      return { interrupted: true };
    }
    return { error: first.err && errorOf(first.err), interrupted: false };
  } catch (err) {
    return { error: errorOf(toBusinessError(err)), interrupted: false };
  }
}

/** Every copy into the set done, and the session released (which also delivers its trailing events: the ends of stopped bundles). */
async function finishSet(session: { release(): Promise<void> }, set: BackupSetWriter): Promise<ErrorInfo | undefined> {
  let error: ErrorInfo | undefined;
  try {
    await set.flush();
  } catch (err) {
    error = { code: ErrorCode.IO_ERROR, message: `Writing the backup set failed: ${(err as Error).message}` };
  }
  try {
    await session.release();
    await set.flush();
  } catch (err) {
    error ??= errorOf(toBusinessError(err));
  }
  return error;
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
  try {
    for (const bundleName of names) {
      const manifest = base ? await baseManifest(base, bundleName, emit) : undefined;
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
  }
}

/** The base's manifest of `bundleName` when it can serve as the base of an increment; else undefined (and a notice why). */
async function baseManifest(base: SetInfo, bundleName: string, emit: Emit): Promise<string | undefined> {
  const full = (why: string) => {
    emit({ type: 'notice', message: `${bundleName}: ${why}: backed up in full` });
    return undefined;
  };
  if (!base.done.includes(bundleName)) return full('the base set does not hold it completely');
  const file = path.join(base.dir, bundleName, SET_MANIFEST);
  if (!statSync(file, { throwIfNoEntry: false })?.isFile()) return full(`the base set has no ${SET_MANIFEST} for it`);
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
