// The ohbackup side of the bench, through the product's own entry points (dist/).
import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBackup } from '../dist/client/runs/runBackup.js';
import { backup } from '../dist/client/index.js';
import { getClient } from '../dist/client/connection.js';
import { restoreFromSet } from '../dist/client/runs/restoreSession.js';
import { track } from './procs.js';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Rejects after `ms` with a message naming `what`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A full backup of `bundles` into `out` with runBackup (as `ohbackup backup`
 * does). Timed from the session's start (runBackup's 'start' event, when the
 * session is created) to runBackup's return (every file in the set, the
 * summary written, the session released); `callMs` also counts what comes
 * before the session (connecting, the worker check, the capability file).
 */
export async function fullBackup({ out, bundles, rate, timeoutMs }) {
  const called = performance.now();
  let started;
  let startedWall;
  const result = await withTimeout(
    runBackup({
      out,
      bundles,
      rate,
      onProgress: (e) => {
        if (e.type === 'start') {
          started = performance.now();
          startedWall = Date.now();
        }
      },
    }),
    timeoutMs,
    'the full backup',
  );
  const ended = performance.now();
  if (result.outcome !== 'done') {
    const bad = result.bundles.filter((b) => b.state !== 'done').map((b) => `${b.bundleName}: ${b.state} ${b.error?.code ?? ''} ${b.error?.message ?? ''}`);
    throw new Error(`the full backup ended ${result.outcome}${result.error ? ` (${result.error.code} ${result.error.message})` : ''}\n  ${bad.join('\n  ')}`);
  }
  return {
    ms: ended - (started ?? called),
    callMs: ended - called,
    sessionId: result.sessionId,
    files: result.bundles.reduce((n, b) => n + b.files, 0),
    bytes: result.bundles.reduce((n, b) => n + b.bytes, 0),
    /** Wall clock at the session's start: the base of an incremental backup. */
    startedAtMs: startedWall ?? Date.now(),
  };
}

/**
 * A restore of the set onto the device a running worker process serves on
 * `taskQueue` (an empty data root): restoreFromSet, the function `ohbackup
 * restore` drives. Worker start-up is not counted: that worker is already up.
 */
export async function restore({ from, bundles, taskQueue, timeoutMs }) {
  const started = performance.now();
  const r = await withTimeout(restoreFromSet({ from, bundles, session: { taskQueue } }), timeoutMs, 'the restore');
  const ms = performance.now() - started;
  const bad = r.bundles.filter((b) => b.state !== 'done');
  if (bad.length)
    throw new Error(
      `the restore left bundles not done:\n  ${bad.map((b) => `${b.bundleName}: ${b.state} ${b.error?.code ?? ''} ${b.error?.message ?? ''}`).join('\n  ')}`,
    );
  return { ms, sessionId: r.sessionId, bytes: r.bundles.reduce((n, b) => n + b.bytes, 0) };
}

/** The last workflow-task failure in a workflow's history (why an update "failed" without saying why), if any. */
async function workflowTaskFailure(workflowId) {
  try {
    const history = await (await getClient()).workflow.getHandle(workflowId).fetchHistory();
    const failed = history.events.filter((e) => e.workflowTaskFailedEventAttributes).pop();
    return failed?.workflowTaskFailedEventAttributes?.failure?.message;
  } catch {
    return undefined;
  }
}

/**
 * One session of `bundles` driven directly through backup.SessionBackup:
 * `onBegin(name)` runs in onBundleBegin, every onFileReady is timestamped and
 * its fd closed at once. Resolves at onAllBundlesEnd (then releases).
 */
async function session({ bundles, onBegin, timeoutMs, what }) {
  const times = [];
  /** When the worker let each file go (file.readyAt, the worker's clock, ms). */
  const readyAts = [];
  const errors = [];
  // A notice, not a failure: the tool's event queries went unanswered for a while and the session went on.
  let serviceDied = 0;
  let allEnded;
  const ended = new Promise((resolve) => (allEnded = resolve));
  const started = performance.now();
  const s = new backup.SessionBackup({
    onBundleBegin(err, name) {
      if (err) errors.push(`${name}: onBundleBegin ${err.code} ${err.message}`);
      else onBegin?.(name);
    },
    onFileReady(err, file) {
      if (err) {
        errors.push(`${file.bundleName}/${file.uri}: ${err.code} ${err.message}`);
        return;
      }
      times.push(performance.now());
      if (typeof file.readyAt === 'number') readyAts.push(file.readyAt);
      closeSync(file.fd);
    },
    onBundleEnd(err, name) {
      if (err) errors.push(`${name}: onBundleEnd ${err.code} ${err.message}`);
    },
    onAllBundlesEnd(err) {
      if (err) errors.push(`onAllBundlesEnd ${err.code} ${err.message}`);
      allEnded(performance.now());
    },
    onBackupServiceDied() {
      serviceDied++;
    },
  });
  try {
    await s.appendBundles(bundles);
    const endedAt = await withTimeout(ended, timeoutMs, what);
    return { ms: endedAt - started, times, readyAts, errors, serviceDied, sessionId: s.sessionId };
  } catch (err) {
    const hint = await workflowTaskFailure(s.sessionId);
    if (hint && err instanceof Error) err.message += ` (session workflow ${s.sessionId}: workflow task failed: ${hint})`;
    throw err;
  } finally {
    await s.release().catch(() => undefined);
  }
}

/**
 * The hand-over rate achieved at send rate `rate`: one session of a bundle of
 * big files, updateSendRate(bundle, rate) in onBundleBegin, rate = (n−1)/(t_last − t_first)
 * over its onFileReady timestamps (the index, manage.json, last, included).
 * Also the least-squares slope of file number over time, which batching does not bias.
 */
export async function handOverRate({ bundle, rate, timeoutMs }) {
  let rateSet = true;
  const r = await session({
    bundles: [bundle],
    onBegin: (name) => (rateSet = backup.updateSendRate(name, rate)),
    timeoutMs,
    what: `the hand-over at ${rate}/s`,
  });
  if (r.errors.length) throw new Error(`the hand-over at ${rate}/s had errors:\n  ${r.errors.slice(0, 5).join('\n  ')}`);
  if (!rateSet) throw new Error(`updateSendRate(${bundle}, ${rate}) returned false`);
  const t = r.times;
  const n = t.length;
  const spanS = (t[n - 1] - t[0]) / 1000;
  const achieved = n > 1 && spanS > 0 ? (n - 1) / spanS : NaN;
  // The hand-over itself: when the worker let each file go. What the tool saw adds the event transport's jitter.
  const released = r.readyAts.length === n ? r.readyAts.slice().sort((a, b) => a - b) : undefined;
  return {
    rate,
    files: n,
    spanS,
    achieved,
    slope: released ? leastSquaresRate(released) : leastSquaresRate(t),
    slopeSource: released ? 'file.readyAt (worker)' : 'onFileReady (tool)',
    received: { achieved, slope: leastSquaresRate(t) },
    // A stall (the worker, the service or the disk busy) shows as one long gap, a pacing error as none.
    longestGaps: released ? longestGaps(released) : longestGaps(t),
    serviceDied: r.serviceDied,
    sessionId: r.sessionId,
  };
}

/** The 3 longest gaps between consecutive times (ms), with the file after each. */
function longestGaps(t) {
  return t
    .slice(1)
    .map((x, i) => ({ file: i + 1, ms: Math.round(x - t[i]) }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 3);
}

/** Least-squares slope of file number on time (files per second; times in ms). */
function leastSquaresRate(t) {
  const n = t.length;
  if (n < 2) return NaN;
  const mt = t.reduce((a, x) => a + x, 0) / n;
  const mi = (n - 1) / 2;
  let sxy = 0;
  let sxx = 0;
  t.forEach((x, i) => {
    sxy += (x - mt) * (i - mi);
    sxx += (x - mt) ** 2;
  });
  return sxx > 0 ? (sxy / sxx) * 1000 : NaN;
}

/** One session of many (empty) bundles: session start → onAllBundlesEnd. */
export async function manyBundles({ bundles, timeoutMs }) {
  const r = await session({ bundles, timeoutMs, what: `the session of ${bundles.length} bundles` });
  if (r.errors.length) throw new Error(`the session of ${bundles.length} bundles had errors:\n  ${r.errors.slice(0, 5).join('\n  ')}`);
  return { ms: r.ms, files: r.times.length, serviceDied: r.serviceDied, sessionId: r.sessionId };
}

/**
 * `ohbackup backup --out DIR --json BUNDLE…` as a user runs it: bin/ohbackup
 * in a child process, default options (the command's own send rate). Timed
 * from the spawn to the process's exit: Node start, connection, worker check,
 * the session and the set.
 */
export async function cliBackup({ out, bundles, env, timeoutMs }) {
  const started = performance.now();
  const child = track(
    spawn(path.join(projectRoot, 'bin/ohbackup'), ['backup', '--out', out, '--json', ...bundles], { env, stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b) => (stdout += b.toString()));
  child.stderr.on('data', (b) => (stderr = (stderr + b.toString()).slice(-4000)));
  const code = await withTimeout(
    new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c, signal) => resolve(signal ?? c));
    }),
    timeoutMs,
    '`ohbackup backup`',
  ).catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
  const ms = performance.now() - started;
  if (code !== 0) throw new Error(`\`ohbackup backup --out\` exited ${code}:\n${stderr}${stdout.slice(-2000)}`);
  // Exit 0: every bundle done (docs/cli.md); the JSON names the session.
  let sessionId;
  try {
    sessionId = JSON.parse(stdout).sessionId;
  } catch {
    sessionId = undefined;
  }
  return { ms, sessionId };
}
