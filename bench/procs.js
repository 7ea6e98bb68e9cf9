// Processes the bench starts: worker processes (measured through /proc), and
// timed external commands (tar, restic). Every child is registered so it is
// stopped whatever happens (killAllSync runs on exit).
import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const live = new Set();

export function track(child) {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Last resort, synchronous (for process 'exit'): SIGKILL every child still running. */
export function killAllSync() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

const exited = (child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r())));

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child, graceMs = 15_000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

/**
 * `node dist/workers/main.js` for one data root, in its own process; resolves
 * once it says it is ready (it polls its task queue).
 */
export async function startWorkerProcess({ label, address, dataRoot, stateDir, taskQueue, logFile, nodeArgs = [], readyTimeoutMs = 180_000 }) {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = track(
    spawn(process.execPath, ['--max-semi-space-size=2', ...nodeArgs, path.join(projectRoot, 'dist/workers/main.js')], {
      cwd: projectRoot,
      // Malloc and V8 settings as bin/ohbackup starts every worker.
      env: {
        MALLOC_ARENA_MAX: '2',
        MALLOC_MMAP_THRESHOLD_: '262144',
        ...process.env,
        TEMPORAL_ADDRESS: address,
        OHBACKUP_DATA_ROOT: dataRoot,
        OHBACKUP_TASK_QUEUE: taskQueue,
        OHBACKUP_STATE_DIR: stateDir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let tail = '';
  let onReady;
  const ready = new Promise((resolve) => (onReady = resolve));
  const keep = (buf) => {
    log.write(buf);
    tail = (tail + buf.toString()).slice(-4000);
    if (/worker ready/.test(tail)) onReady();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.once('exit', () => log.end());
  let timer;
  const outcome = await Promise.race([
    ready.then(() => 'ready'),
    exited(child).then(() => 'exited'),
    new Promise((r) => (timer = setTimeout(() => r('timeout'), readyTimeoutMs))),
  ]);
  clearTimeout(timer);
  if (outcome !== 'ready') {
    child.kill('SIGKILL');
    throw new Error(`${label} worker ${outcome === 'exited' ? `exited (code ${child.exitCode})` : 'was not ready in time'}; its output:\n${tail}`);
  }
  return { label, child, pid: child.pid, logFile, stop: () => stopChild(child), tail: () => tail };
}

/**
 * What the step-alone scripts (scripts/benchMany.js, scripts/benchIncrement.js) run on: a headless dev server
 * (its database in `work`) and one backup worker process for `dataRoot` on a task queue of its own, which
 * OHBACKUP_TASK_QUEUE and TEMPORAL_ADDRESS then name for the sessions this process starts.
 */
export async function startServiceAndWorker({ work, dataRoot, queue, nodeArgs = [] }) {
  const { startDevServer } = await import('../dist/workers/devServer.js');
  const server = await startDevServer({ headless: true, port: 0, dbFile: path.join(work, 'temporal.db') });
  track(server.process);
  process.env.TEMPORAL_ADDRESS = server.address;
  const taskQueue = `${queue}-${process.pid}`;
  process.env.OHBACKUP_TASK_QUEUE = taskQueue;
  const worker = await startWorkerProcess({
    label: 'backup',
    address: server.address,
    dataRoot,
    stateDir: path.join(work, 'worker-state'),
    taskQueue,
    logFile: path.join(work, 'worker.log'),
    nodeArgs,
  });
  return { server, worker };
}

/** CPU time (user + system) a process has used so far, in ms (/proc's clock ticks of 10 ms). */
export function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** A /proc/<pid>/status field in bytes (VmRSS, VmHWM), or undefined. */
export function procStatus(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resets the process's VmHWM to its current RSS (clear_refs 5); false where not allowed. */
export function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Samples VmRSS every `everyMs`; `stop()` returns the RSS at start, the peak sampled, and VmHWM when it could be reset at start. */
export function watchRss(pid, everyMs = 100) {
  const hwmReset = resetPeakRss(pid);
  const atStart = procStatus(pid, 'VmRSS') ?? 0;
  let peak = atStart;
  const timer = setInterval(() => {
    const rss = procStatus(pid, 'VmRSS');
    if (rss !== undefined && rss > peak) peak = rss;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const hwm = hwmReset ? procStatus(pid, 'VmHWM') : undefined;
      return { atStart, sampledPeak: peak, hwm, peak: Math.max(peak, hwm ?? 0) };
    },
  };
}

/** Runs a command to completion; resolves with its wall time in ms, rejects on failure (with its stderr). */
export function timed(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], ...opts }));
    let err = '';
    child.stderr.on('data', (b) => (err = (err + b.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      const ms = performance.now() - started;
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')} … failed (${signal ?? `exit ${code}`}):\n${err}`));
    });
  });
}

/**
 * Flushes every file system (`sync`, untimed for the figures) and resolves with how long it took:
 * a timed step then starts with no dirty pages of earlier steps to write back. The page cache stays.
 */
export const settle = () => timed('sync', []);

/** Runs a command and returns its stdout (untimed helpers: versions, restic init). */
export function output(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }));
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b.toString()));
    child.stderr.on('data', (b) => (err = (err + b.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}):\n${err}`))));
  });
}

/** Whether `name` is an executable on PATH (its path), without running anything. */
export async function onPath(name) {
  const { access, constants } = await import('node:fs/promises');
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    if (
      await access(file, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return file;
  }
  return undefined;
}
