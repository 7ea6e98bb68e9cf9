/**
 * `ohbackup backup`: a backup session into a backup set folder; with
 * `--incremental` / `--base SET` an IncrementalBackupSession whose bundles'
 * manifests are kept in the set as the base of the next increment.
 * `runBackup` is the whole run without any printing, so scripts/demo.js goes
 * through exactly the code the command does; `progressReporter` and
 * `formatBackupResult` are the command's output, shared the same way.
 */
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { readManifest } from '../../activities/manifest.js';
import { BusinessError } from '../../common/businessError.js';
import { CapabilitiesSchema, type Capabilities } from '../../common/capabilities.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { INDEX_URI } from '../../common/manageIndex.js';
import type { BundleOutcome } from '../../common/session.js';
import { DEFAULT_TEMPORAL_ADDRESS } from '../../common/env.js';
import { temporalTarget } from '../../common/temporalConfig.js';
import * as backup from '../backup.js';
import { openCapabilities } from '../capabilities.js';
import { BackupSetWriter, SET_CAPABILITIES, SET_MANIFEST, SET_SUMMARY, readSetInfo, type BackupSetSummary, type SetInfo } from '../backupSet.js';
import { device, deviceQueue, getClient, taskQueue } from '../connection.js';
import { toBusinessError } from '../failures.js';
import type { GeneralCallbacks, IncrementalBackupData } from '../types.js';
import { BundleNameArg, parseArg } from '../validate.js';
import { EXIT, formatBytes, formatTable, isConnectFailure, onStopSignals, parseDeviceId, parseIntOption, unreachableMessage, usageError } from './shared.js';

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

export interface BackupRunResult {
  sessionId: string;
  namespace: string;
  uiUrl: string;
  out: string;
  kind: 'backup' | 'incremental';
  /** The base set (absolute), for an increment. */
  base?: string;
  bundles: BundleOutcome[];
  /** Set when the session itself failed (not just some bundles). */
  error?: ErrorInfo;
  interrupted: boolean;
  /** 0 all done, 3 partial, 1 all failed or session failed, 130 interrupted. */
  exitCode: number;
}

/** A failure before any session ran (no service, no worker, nothing to back up or restore, bad --out / --from). */
export class SetupError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}
export { SetupError as BackupSetupError };

/** `${OHBACKUP_UI_URL ?? http://127.0.0.1:8233}/namespaces/<ns>/workflows/<sessionId>` */
export function sessionUiUrl(namespace: string, sessionId: string): string {
  const base = (process.env.OHBACKUP_UI_URL ?? 'http://127.0.0.1:8233').replace(/\/+$/, '');
  return `${base}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(sessionId)}`;
}

const info = (err: BusinessError<unknown>): ErrorInfo => ({ code: err.code, message: err.message });

export async function runBackup(opts: RunBackupOptions): Promise<BackupRunResult> {
  const emit = opts.onProgress ?? (() => undefined);
  const out = path.resolve(opts.out);
  const existing = statSync(out, { throwIfNoEntry: false });
  if (existing && (!existing.isDirectory() || readdirSync(out).length > 0)) {
    // Mixing two sessions' files in one folder would make a set that verifies against neither.
    throw new SetupError(`--out ${out} must be a new or empty folder.`, EXIT.usage);
  }
  const base = opts.base !== undefined ? readBase(opts.base) : undefined;
  const incremental = Boolean(opts.incremental || base);
  const kind = incremental ? ('incremental' as const) : ('backup' as const);

  const client = opts.client ?? (await connect());
  const queue = opts.taskQueue ?? taskQueue();
  const namespace = client.options.namespace;
  await waitForWorkers(client, queue);
  const caps = await readCapabilities(client, opts.taskQueue ? queue : deviceQueue());
  const names = opts.bundles?.length ? [...new Set(opts.bundles)] : caps.bundleInfos.filter((b) => b.allToBackup).map((b) => b.name);
  if (!names.length) throw new SetupError('The device reports no backup-able bundles: nothing to back up.', EXIT.failed);
  const estimate = new Map(caps.bundleInfos.map((b) => [b.name, b.spaceOccupied]));

  const set = new BackupSetWriter(out);
  await set.init();
  await set.writeJson(SET_CAPABILITIES, caps);
  const startedAt = Date.now();
  const createdAt = new Date(startedAt).toISOString();
  const time = Math.floor(startedAt / 1000);

  const outcomes = new Map<string, BundleOutcome>(names.map((n) => [n, { bundleName: n, state: 'pending', files: 0, bytes: 0 }]));
  const outcome = (name: string) => {
    let o = outcomes.get(name);
    if (!o) outcomes.set(name, (o = { bundleName: name, state: 'pending', files: 0, bytes: 0 }));
    return o;
  };
  // A file that could not be handed over leaves the bundle's set incomplete, whatever its onBundleEnd says.
  const lostFiles = new Set<string>();
  let allEnded!: (err: BusinessError | undefined) => void;
  const ended = new Promise<BusinessError | undefined>((resolve) => (allEnded = resolve));

  const callbacks: GeneralCallbacks = {
    onBundleBegin(err, name) {
      const o = outcome(name);
      if (err) {
        // onBundleEnd follows and reports the bundle.
        o.state = 'failed';
        o.error = info(err);
        return;
      }
      o.state = 'running';
      emit({ type: 'begin', bundleName: name, estimatedBytes: estimate.get(name) });
      if (opts.rate !== undefined && !backup.updateSendRate(name, opts.rate)) {
        emit({ type: 'notice', message: `${name}: the send rate could not be set` });
      }
    },
    onFileReady(err, file) {
      const o = outcome(file.bundleName);
      const lost = (e: BusinessError) => {
        lostFiles.add(file.bundleName);
        o.error ??= info(e);
        emit({ type: 'notice', message: `${file.bundleName}: ${file.uri} was not handed over: ${e.message}` });
      };
      // Incremental: every file brings an fd of the bundle's new full manifest; the one with the index (always last) is kept, the others closed.
      const manifestFd = file.manifestFd;
      const keepManifest = incremental && !err && file.uri === INDEX_URI;
      if (manifestFd !== undefined && manifestFd >= 0 && !keepManifest) closeQuietly(manifestFd);
      if (err) return lost(err);
      let size: number;
      try {
        size = fstatSync(file.fd).size;
      } catch (e) {
        closeQuietly(file.fd);
        if (keepManifest && manifestFd !== undefined && manifestFd >= 0) closeQuietly(manifestFd);
        return lost(new BusinessError(ErrorCode.IO_ERROR, `I/O error: ${(e as Error).message}`));
      }
      o.bytes += size;
      o.files += 1;
      set.keep(file.bundleName, file.uri, file.fd);
      if (keepManifest) {
        if (manifestFd !== undefined && manifestFd >= 0) set.keep(file.bundleName, SET_MANIFEST, manifestFd);
        else emit({ type: 'notice', message: `${file.bundleName}: no manifest came with its files; an increment based on this set backs it up in full` });
      }
      emit({ type: 'file', bundleName: file.bundleName, files: o.files, bytes: o.bytes });
    },
    onBundleEnd(err, name) {
      const o = outcome(name);
      if (err) {
        o.state = 'failed';
        o.error = info(err);
      } else {
        o.state = lostFiles.has(name) ? 'failed' : 'done';
      }
      emit({ type: 'end', outcome: { ...o } });
    },
    onAllBundlesEnd: (err) => allEnded(err),
    onBackupServiceDied() {
      emit({ type: 'notice', message: 'The backup service is unreachable (no worker serves the session); the session continues once one is back ...' });
    },
  };

  const sessionOptions = { taskQueue: queue, ...(opts.client ? { client: opts.client } : {}) };
  const session = incremental ? new backup.IncrementalBackupSession(callbacks, sessionOptions) : new backup.SessionBackup(callbacks, sessionOptions);
  const { sessionId } = session;
  emit({ type: 'start', sessionId, bundles: names, kind, ...(base ? { base: base.dir } : {}) });
  let error: ErrorInfo | undefined;
  let interrupted = false;
  try {
    if (session instanceof backup.IncrementalBackupSession) await appendIncrement(session, names, base, emit);
    else await session.appendBundles(names);
    // Besides the normal end, stop waiting if the session workflow closes under us (e.g. terminated in the UI) or we are interrupted.
    const closed = client.workflow
      .getHandle(sessionId)
      .result()
      .then(
        () => toBusinessError(new Error('the session workflow completed before its bundles ended')),
        (e: unknown) => toBusinessError(e),
      );
    const first = await Promise.race([
      ended.then((err) => ({ how: 'ended' as const, err })),
      closed.then((err) => ({ how: 'closed' as const, err })),
      abortion(opts.signal).then(() => ({ how: 'aborted' as const, err: undefined })),
    ]);
    if (first.how === 'aborted') {
      interrupted = true;
      emit({ type: 'notice', message: 'Interrupted: releasing the session (running bundles are stopped) ...' });
    } else if (first.err) {
      error = info(first.err);
    }
  } catch (err) {
    error = info(toBusinessError(err));
  }
  try {
    await set.flush();
  } catch (err) {
    error ??= { code: ErrorCode.IO_ERROR, message: `Writing the backup set failed: ${(err as Error).message}` };
  }
  try {
    // Also delivers any trailing events (the end of bundles stopped by an interruption).
    await session.release();
    await set.flush();
  } catch (err) {
    error ??= info(toBusinessError(err));
  }

  for (const o of outcomes.values()) {
    if (o.state === 'pending') o.state = 'notStarted';
    else if (o.state === 'running') {
      o.state = 'failed';
      o.error ??= { code: ErrorCode.TASK_FAILED, message: interrupted ? 'Interrupted' : 'The session ended before the bundle did' };
    }
  }
  const bundles = [...outcomes.values()];
  const summary: BackupSetSummary = { version: 1, sessionId, kind, createdAt, time, ...(base ? { base: base.dir, baseRelative: path.relative(out, base.dir) } : {}), bundles };
  await set.writeJson(SET_SUMMARY, summary);

  const done = bundles.filter((b) => b.state === 'done').length;
  const exitCode = interrupted ? EXIT.interrupted : error || done === 0 ? EXIT.failed : done < bundles.length ? EXIT.partial : EXIT.ok;
  return { sessionId, namespace, uiUrl: sessionUiUrl(namespace, sessionId), out, kind, ...(base ? { base: base.dir } : {}), bundles, error, interrupted, exitCode };
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already unusable; nothing more to release.
  }
}

/** `--base SET`: a readable backup set with a time, or a usage error. */
function readBase(dir: string): SetInfo & { time: number } {
  if (dir.trim() === '') throw new SetupError('--base needs the folder of an earlier backup set.', EXIT.usage);
  let info: SetInfo;
  try {
    info = readSetInfo(dir);
  } catch (err) {
    throw new SetupError(`--base ${(err as Error).message}.`, EXIT.usage);
  }
  if (info.time === undefined) throw new SetupError(`--base ${info.dir}: its ${SET_SUMMARY} has neither a time nor a createdAt: it cannot be a base.`, EXIT.usage);
  return { ...info, time: info.time };
}

/**
 * Appends every bundle to the incremental session in one call: as an
 * increment of the base when the base holds it completely with a valid
 * manifest (an fd on `<base>/<bundle>/manifest.jsonl`, closed once the append
 * has read it), else in full (time 0, fd -1).
 */
async function appendIncrement(
  session: backup.IncrementalBackupSession,
  names: string[],
  base: (SetInfo & { time: number }) | undefined,
  emit: (e: BackupProgressEvent) => void,
): Promise<void> {
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
async function baseManifest(base: SetInfo, bundleName: string, emit: (e: BackupProgressEvent) => void): Promise<string | undefined> {
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

function abortion(signal?: AbortSignal): Promise<void> {
  if (!signal) return new Promise(() => undefined);
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** The tool's Temporal client, or a SetupError saying how to reach a service. */
export async function connect(): Promise<Client> {
  try {
    return await getClient();
  } catch (err) {
    const address = temporalTarget().connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS;
    throw new SetupError(isConnectFailure(err) ? unreachableMessage(address, (err as Error).message) : String((err as Error).message ?? err), EXIT.failed);
  }
}

/**
 * Without a worker on the device's task queue, every call would wait forever:
 * say so instead. Waits briefly, since a worker that has just started may not
 * have polled yet.
 */
export async function waitForWorker(client: Client, queue: string, waitMs = 10_000, device?: string): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const res = await client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name: queue, kind: 1 /* NORMAL */ },
      taskQueueType: 1 /* WORKFLOW */,
    });
    if (res.pollers?.length) return;
    if (Date.now() > deadline && device) {
      throw new SetupError(
        `No ohbackup worker serves device "${device}" (task queue "${queue}") in namespace ${client.options.namespace}.\n` +
          `Start one on the device: \`ohbackup worker --device ${device} --data-root DIR\`.`,
        EXIT.failed,
      );
    }
    if (Date.now() > deadline) {
      throw new SetupError(
        `No ohbackup worker serves task queue "${queue}" in namespace ${client.options.namespace}.\n` +
          'Start one for the device: `ohbackup worker --data-root DIR` (or `ohbackup dev --data-root DIR` for a local Temporal server with its worker),\n' +
          "or set OHBACKUP_TASK_QUEUE to the device's task queue.",
        EXIT.failed,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The sessions' task queue and, when a device is named, the device's own queue: each needs a worker. */
export async function waitForWorkers(client: Client, queue = taskQueue()): Promise<void> {
  await waitForWorker(client, queue);
  const named = device();
  if (named) await waitForWorker(client, deviceQueue(), undefined, named);
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
  if (!parsed.success) throw new SetupError(`The device's capability file is not valid: ${parsed.error.issues[0]?.message}`, EXIT.failed);
  return parsed.data;
}

export interface ProgressReporter {
  onProgress(event: BackupProgressEvent): void;
  stop(): void;
}

/** Progress on `stream` (stderr, so stdout stays the result): one bar per running bundle on a TTY, else plain lines. */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  return stream.isTTY ? barReporter(stream) : lineReporter(stream);
}

function endLine(o: BundleOutcome): string {
  return o.state === 'done'
    ? `done    ${o.bundleName}  ${o.files} files, ${formatBytes(o.bytes)}`
    : `${o.state.padEnd(7)} ${o.bundleName}  ${o.error ? `${o.error.code} ${o.error.message}` : ''}`;
}

function startSuffix(e: Extract<BackupProgressEvent, { type: 'start' }>): string {
  if (e.base) return ` (incremental, base ${e.base})`;
  return e.kind === 'incremental' ? ' (incremental session, in full)' : '';
}

function lineReporter(stream: NodeJS.WritableStream): ProgressReporter {
  const say = (line: string) => stream.write(`${line}\n`);
  return {
    onProgress(e) {
      if (e.type === 'start') say(`Session ${e.sessionId}: backing up ${e.bundles.join(', ')}${startSuffix(e)}`);
      else if (e.type === 'begin') say(`begin   ${e.bundleName}`);
      else if (e.type === 'end') say(endLine(e.outcome));
      else if (e.type === 'notice') say(e.message);
    },
    stop() {},
  };
}

function barReporter(stream: NodeJS.WriteStream): ProgressReporter {
  const multibar = new cliProgress.MultiBar(
    {
      stream,
      format: ' {bundle} |{bar}| {files} files  {size}  {status}',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  // The bar follows the bytes handed over against the capability file's estimate; it completes when the bundle ends.
  const bars = new Map<string, { bar: cliProgress.SingleBar; total: number }>();
  let width = 0;
  const label = (name: string) => name.padEnd(width);
  return {
    onProgress(e) {
      if (e.type === 'start') {
        width = Math.max(...e.bundles.map((b) => b.length));
        if (e.kind === 'incremental') multibar.log(`Session ${e.sessionId}${startSuffix(e)}\n`);
      }
      else if (e.type === 'begin') {
        const total = Math.max(1, e.estimatedBytes ?? 1);
        bars.set(e.bundleName, { bar: multibar.create(total, 0, { bundle: label(e.bundleName), files: 0, size: formatBytes(0), status: '' }), total });
      } else if (e.type === 'file') {
        const b = bars.get(e.bundleName);
        b?.bar.update(Math.min(e.bytes, Math.floor(b.total * 0.99)), { files: e.files, size: formatBytes(e.bytes) });
      } else if (e.type === 'end') {
        const b = bars.get(e.outcome.bundleName);
        const status = e.outcome.state === 'done' ? 'done' : `${e.outcome.state} ${e.outcome.error?.code ?? ''}`;
        if (b) b.bar.update(b.total, { files: e.outcome.files, size: formatBytes(e.outcome.bytes), status });
        else multibar.log(`${endLine(e.outcome)}\n`);
      } else if (e.type === 'notice') multibar.log(`${e.message}\n`);
    },
    stop: () => multibar.stop(),
  };
}

/** The per-bundle table and where to look next. */
export function formatBackupResult(r: BackupRunResult): string {
  const rows = r.bundles.map((b) => [b.bundleName, b.state, String(b.files), formatBytes(b.bytes), b.error ? `${b.error.code} ${b.error.message}` : '']);
  const lines = [formatTable(['bundle', 'state', 'files', 'bytes', 'error'], rows, [2, 3]), ''];
  if (r.error) lines.push(`Session failed: ${r.error.code} ${r.error.message}`);
  if (r.interrupted) lines.push('Interrupted: the set is incomplete.');
  lines.push(`Backup set   ${r.out}${r.kind === 'incremental' ? ' (incremental)' : ''}`);
  if (r.base) lines.push(`Base set     ${r.base}`);
  lines.push(`Session      ${r.sessionId}`, `Temporal UI  ${r.uiUrl}`);
  return lines.join('\n');
}

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .summary('back up bundles of the device into a backup set folder')
    .description(
      'Back up bundles of the device into a backup set folder: every handed-over file, capabilities.json and backup_set.json. ' +
        'Runs one backup session (a Temporal workflow) served by the device worker (`ohbackup worker` or `ohbackup dev`). ' +
        'With --incremental, an incremental session that also keeps each bundle\'s manifest (<bundle>/manifest.jsonl) in the set; ' +
        'with --base SET, only files new or changed since SET are handed over, and deletions are recorded ' +
        '(`ohbackup restore --from` the increment restores SET and the increment after it).',
    )
    .argument('[bundle...]', 'bundles to back up (default: every bundle the device reports as backup-able)')
    .requiredOption('--out <dir>', 'the backup set folder to write (new or empty)')
    .option('--rate <n>', 'files per second handed over per bundle (default 60; above 800 means 800)', parseIntOption(1))
    .option('--incremental', 'an incremental session: keeps each bundle\'s manifest in the set, so the set can be the base of an increment (in full without --base)')
    .option('--base <set>', 'back up only what changed since this set (an earlier --incremental set; implies --incremental); bundles it lacks go in full')
    .option('--device <id>', 'back up the device of this ID, served by `ohbackup worker --device ID` (its bundle work runs on its own task queue)', parseDeviceId)
    .option('--json', 'print the result as one JSON object (sessionId, uiUrl, out, kind, base, bundles)')
    .addHelpText(
      'after',
      `
Exit codes: 0 every bundle done; 3 some failed, some done; 1 all failed or the session failed;
            2 wrong usage; 130 interrupted (Ctrl-C releases the session).

Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*;
task queue: OHBACKUP_TASK_QUEUE (default "ohbackup"), and with --device ID the device's own (ohbackup-device-ID); UI link base: OHBACKUP_UI_URL (default http://127.0.0.1:8233).

Examples:
  $ ohbackup backup --out ./set
  $ ohbackup backup --out ./set-notes com.example.notes com.example.docs
  $ TEMPORAL_ADDRESS=127.0.0.1:7233 ohbackup backup --out ./set --rate 200 --json
  $ ohbackup backup --device phone-1 --out ./set-phone-1           # the device whose worker runs \`ohbackup worker --device phone-1\`
  $ ohbackup backup --incremental --out ./full                      # a full backup that keeps manifests
  $ ohbackup backup --base ./full --out ./inc1                      # only what changed since ./full
  $ ohbackup backup --base ./inc1 --out ./inc2                      # ... and since ./inc1
  $ ohbackup restore --from ./inc2 --to ./new-device                # restores ./full, ./inc1, then ./inc2`,
    )
    .action(async (bundles: string[], opts: { out: string; rate?: number; incremental?: boolean; base?: string; device?: string; json?: boolean }, cmd: Command) => {
      for (const name of bundles) {
        try {
          parseArg(BundleNameArg, name, 'bundle');
        } catch {
          usageError(cmd, `"${name}" is not a bundle name (like com.example.notes).`);
        }
      }
      if (opts.device) backup.configure({ device: opts.device });
      const reporter = progressReporter();
      const abort = new AbortController();
      const removeHandlers = onStopSignals(
        () => abort.abort(),
        () => process.exit(EXIT.interrupted),
      );
      let setupError: SetupError | undefined;
      try {
        const result = await runBackup({
          out: opts.out,
          bundles,
          rate: opts.rate,
          incremental: opts.incremental,
          base: opts.base,
          onProgress: (e) => reporter.onProgress(e),
          signal: abort.signal,
        });
        reporter.stop();
        if (opts.json) {
          const { sessionId, uiUrl, out, kind, base, bundles: outcomes, error } = result;
          console.log(JSON.stringify({ sessionId, uiUrl, out, kind, ...(base ? { base } : {}), bundles: outcomes, ...(error ? { error } : {}) }, null, 2));
        } else {
          console.log(`\n${formatBackupResult(result)}`);
        }
        process.exitCode = result.exitCode;
      } catch (err) {
        reporter.stop();
        if (err instanceof SetupError) setupError = err;
        else {
          console.error(`Backup failed: ${toBusinessError(err).message}`);
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
