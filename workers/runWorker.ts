/** Runs one device's worker until SIGINT/SIGTERM (or `signal`) stops it. */
import { mkdir } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { NativeConnection, Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import type { Settings } from '../config/env.js';
import { workerTaskQueue } from '../common/deviceQueue.js';
import { temporalTarget } from '../config/temporalConfig.js';
import { createOhbackupWorker } from './createWorker.js';
import { WorkerLogger, parseLogFormat, type LogFormat } from './logFormat.js';
import { announceDevice } from './deviceRecord.js';

export interface RunWorkerOptions {
  settings: Settings;
  dataRoot: string;
  /**
   * Serve this device only: poll its own task queue (deviceTaskQueue) instead
   * of `settings.taskQueue`, for the bundle work of sessions that name it.
   */
  device?: string;
  address?: string;
  namespace?: string;
  identity?: string;
  /** Stops the worker when aborted (besides SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** Called once the worker polls; with the task queue it polls. */
  onReady?: (taskQueue: string) => void;
  /**
   * The worker runs inside another command (`ohbackup restore --to`): that
   * command owns SIGINT/SIGTERM and stops the worker through `signal` once it
   * has released its session, and only warnings are logged. Applies when this
   * is the process's first worker (the Temporal runtime is installed once).
   */
  embedded?: boolean;
  /** host:port to serve Prometheus metrics on (default: OHBACKUP_METRICS_ADDRESS; none when unset). */
  metricsAddress?: string;
  /** One log line per entry as text or JSON (default: OHBACKUP_LOG_FORMAT, else text). */
  logFormat?: LogFormat;
}

/** Bucket bounds (seconds) of ohbackup's duration histograms: a bundle takes seconds to hours (its deadline is at most 4 h). */
const DURATION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800];

let runtimeInstalled = false;

/** Semi-space size (MiB) of the workflow thread's young generation. */
const WORKFLOW_SEMI_SPACE_MIB = 2;

export async function runWorker(opts: RunWorkerOptions): Promise<void> {
  if (!runtimeInstalled) {
    // INFO by default for a worker of its own (a line per session and bundle); an embedded one logs warnings only.
    // OHBACKUP_LOG_LEVEL overrides. Core's own logs only on errors.
    // Prometheus metrics (Temporal's runtime metrics and ohbackup's own) when OHBACKUP_METRICS_ADDRESS is set.
    const level = logLevel(opts.embedded ? 'WARN' : 'INFO');
    const format = opts.logFormat ?? parseLogFormat(process.env.OHBACKUP_LOG_FORMAT);
    const metricsAddress = checkMetricsAddress(opts.metricsAddress ?? process.env.OHBACKUP_METRICS_ADDRESS);
    const prometheus = {
      bindAddress: metricsAddress ?? '',
      countersTotalSuffix: true,
      histogramBucketOverrides: { ohbackup_bundle_duration_seconds: DURATION_BUCKETS, ohbackup_session_duration_seconds: DURATION_BUCKETS },
    };
    try {
      Runtime.install({
        logger: new WorkerLogger(level, format),
        telemetryOptions: {
          logging: { filter: makeTelemetryFilterString({ core: 'ERROR' }), forward: {} },
          ...(metricsAddress ? { metrics: { prometheus } } : {}),
        },
        ...(opts.embedded ? { shutdownSignals: [] } : {}),
      });
    } catch (err) {
      if (!metricsAddress) throw err;
      throw new Error(`OHBACKUP_METRICS_ADDRESS=${metricsAddress}: cannot serve metrics there (${(err as Error).message.split('\n')[0]})`);
    }
    runtimeInstalled = true;
    if (metricsAddress) Runtime.instance().logger.info(`serving Prometheus metrics at http://${metricsAddress}/metrics`);
  }
  // The workflow thread's V8 heap is made when the worker is: a young generation of 2 MiB semi-spaces (V8 lets them
  // grow to 16-32 MiB) keeps tens of MiB of short-lived workflow garbage from staying resident between collections.
  // The flag is process-wide: set before the thread exists, and left to the process's own flags when it sets them.
  if (!flagGiven('--max-semi-space-size')) setFlagsFromString(`--max-semi-space-size=${WORKFLOW_SEMI_SPACE_MIB}`);
  // V8 sized every isolate's old-generation growth for this machine's memory and, in Node 24, its idle collection
  // rarely starts: the heaps kept growing over consecutive backups. Optimizing for size makes V8 grow them
  // conservatively and collect them when idle; no fixed limit, so a million-file bundle still gets what it needs.
  // V8 reads the flag at each collection: it applies to the isolates already running too (docs/design/performance.md).
  if (!flagGiven('--optimize-for-size')) setFlagsFromString('--optimize-for-size');
  const taskQueue = workerTaskQueue(opts.settings.taskQueue, opts.device);
  const maxActivities = maxConcurrentActivities();
  const target = temporalTarget({ address: opts.address, namespace: opts.namespace });
  await mkdir(opts.settings.stateDir, { recursive: true, mode: 0o700 });
  const connection = await NativeConnection.connect(target.connectionOptions);
  try {
    const worker = await createOhbackupWorker({
      connection,
      namespace: target.namespace,
      taskQueue,
      dataRoot: opts.dataRoot,
      stateDir: opts.settings.stateDir,
      identity: opts.identity,
      maxConcurrentActivities: maxActivities,
      ...(opts.settings.workflowBundle ? { workflowBundle: { codePath: opts.settings.workflowBundle } } : {}),
    });
    // Stopped while the worker was being built (its workflows bundled): never start polling.
    if (opts.signal?.aborted) return;
    const stop = () => worker.shutdown();
    opts.signal?.addEventListener('abort', stop, { once: true });
    const running = worker.run();
    running.catch(() => undefined); // awaited below; not unhandled meanwhile
    if (opts.device) {
      // A worker that cannot say so still serves: the record is what `ohbackup devices` shows, not what runs.
      await announceDevice({ connection, namespace: target.namespace, device: opts.device, taskQueue, identity: opts.identity }).catch((err: unknown) =>
        console.error(`The device record of ${opts.device} was not updated: ${(err as Error).message}`),
      );
    }
    opts.onReady?.(taskQueue);
    await running;
  } finally {
    await connection.close();
  }
}

/** Whether the process was started with this V8 flag (or its negation), on its command line or in NODE_OPTIONS. */
function flagGiven(flag: string): boolean {
  const name = flag.replace(/^--/, '');
  const re = new RegExp(`--(no-)?${name}`);
  return process.execArgv.some((a) => re.test(a)) || re.test(process.env.NODE_OPTIONS ?? '');
}

/** OHBACKUP_MAX_ACTIVITIES: activities this worker runs at once (default: the SDK's); spare devices a heavy load. */
function maxConcurrentActivities(): number | undefined {
  const value = process.env.OHBACKUP_MAX_ACTIVITIES;
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new TypeError(`OHBACKUP_MAX_ACTIVITIES must be a whole number, at least 1 (got "${value}")`);
  return n;
}

function logLevel(fallback: 'INFO' | 'WARN'): 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' {
  const want = (process.env.OHBACKUP_LOG_LEVEL ?? fallback).toUpperCase();
  return (['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const).find((l) => l === want) ?? fallback;
}

/** OHBACKUP_METRICS_ADDRESS: host:port (a name, an IPv4 address or a [bracketed] IPv6 one, and a port 1-65535); unset or empty: no metrics. */
export function checkMetricsAddress(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value.trim());
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
    throw new TypeError(`OHBACKUP_METRICS_ADDRESS must be host:port to serve Prometheus metrics on, e.g. 127.0.0.1:9464 (got "${value}")`);
  return value.trim();
}
