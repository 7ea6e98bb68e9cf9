// `npm run load [-- --sessions 10] [-- --bundles 5] [-- --workers 1,2] [-- --scale 0.05] [-- --address HOST:PORT] [-- --keep]`
//
// Many sessions at once: `--sessions` backup sessions of `--bundles` bundles
// each, all started together, first on one worker process, then on two (real
// `node dist/workers/main.js` processes on one task queue). Every session has
// its own bundles (copies of the sample device's backup-able bundles), so none
// conflicts. Every set is verified byte for byte against the device.
//
// Figures per run: sessions/minute (sessions ÷ the time from the first start
// to the last release), onFileReady latency p50/p95/max, worker peak RSS
// (VmHWM from /proc, reset at the run's start where allowed, and VmRSS sampled
// every 100 ms), files verified, duplicate callbacks, errors.
//
// Latency: the time from the worker handing a file over (`file.readyAt`, set
// by the hand-over activity when the token bucket lets the file go and its
// event is made) to the tool's onFileReady callback starting (the fd already
// open). It spans the event's batch signal, the session workflow's task, the
// tool's event query and the callbacks queued before it in that tool process.
// Worker and tool share the machine's clock.
//
// One table on stdout; the same as JSON in <OHBACKUP_STATE_DIR or .ohbackup>/load/load-<time>.json
// (or `--json-out FILE`). Exit 1 when a set does not verify, a callback came
// twice, or a session failed. Starts its own headless dev server on a temporary
// database unless `--address` names a running one.
import { execSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { backup } from '../dist/client/index.js';
import { BackupSetWriter } from '../dist/client/sets/writer.js';
import { readManageIndex } from '../dist/engine/formats/manageIndex.js';
import { compareBundleSet } from '../dist/client/sets/verify.js';
import { startDevServer } from '../dist/workers/devServer.js';
import { withTimeout } from '../bench/ohbackup.js';
import { killAllSync, startWorkerProcess, track, watchRss } from '../bench/procs.js';
import { mib, secs } from '../bench/report.js';
import { copyBundle, writeTemplate } from '../bench/sampleCopies.js';
import { formatTable } from '../bench/report.js';
import { optionReader } from '../bench/args.js';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(`Usage: npm run load [-- --sessions N] [-- --bundles N] [-- --workers 1,2] [-- --scale X] [-- --address HOST:PORT] [-- --keep] [-- --json-out FILE]
  --sessions N      sessions at once (default 10)
  --bundles N       bundles per session (default 5)
  --workers LIST    worker processes per run, one run each (default 1,2)
  --scale X         sample device scale of each bundle copy (default 0.05)
  --address A       use this Temporal service instead of starting a dev server
  --timeout S       give up on a run after S seconds (default 600)
  --keep            keep the device, sets and logs
  --json-out FILE   write the JSON there instead of the load folder`);
  process.exit(0);
}
const { value, number } = optionReader(argv);
const SESSIONS = number('--sessions', 10);
const BUNDLES = number('--bundles', 5);
const SCALE = number('--scale', 0.05, { min: 0.001, integer: false });
const TIMEOUT_MS = number('--timeout', 600) * 1000;
const WORKER_COUNTS = (value('--workers') ?? '1,2').split(',').map((w) => {
  const n = Number(w);
  if (!Number.isSafeInteger(n) || n < 1) {
    console.error('--workers expects a list of whole numbers ≥ 1, e.g. 1,2');
    process.exit(2);
  }
  return n;
});
const keep = argv.includes('--keep');
const address = value('--address');

// ---------------------------------------------------------------- folders
const t0 = performance.now();
const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
const stateDir = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup');
const loadDir = path.join(stateDir, 'load');
const work = path.join(loadDir, `work-${stamp}`);
const jsonPath = path.resolve(value('--json-out') ?? path.join(loadDir, `load-${stamp}.json`));
const dataRoot = path.join(work, 'device');
mkdirSync(work, { recursive: true, mode: 0o700 });
const log = (line) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);

process.on('exit', () => {
  killAllSync();
  if (!keep) rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; NaN where unreadable. */
const CLOCK_TICKS = Number(execSync('getconf CLK_TCK', { encoding: 'utf8' }).trim()) || 100;
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /, '')
      .split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

const quantile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : NaN);

/**
 * One backup session of `names` into `out`, started together with the others:
 * every callback checked for repeats, every onFileReady's latency recorded.
 */
async function oneSession({ names, out, latencies }) {
  const set = new BackupSetWriter(out);
  await set.init();
  const seen = new Set();
  const errors = [];
  let duplicates = 0;
  let serviceDied = 0;
  let files = 0;
  const once = (key) => {
    if (seen.has(key)) duplicates++;
    seen.add(key);
  };
  let allEnded;
  const ended = new Promise((resolve) => (allEnded = resolve));
  const session = new backup.SessionBackup({
    onFileReady(err, file) {
      const at = Date.now();
      once(`file ${file.bundleName}/${file.uri}`);
      if (err) return void errors.push(`${file.bundleName}/${file.uri}: ${err.code} ${err.message}`);
      if (typeof file.readyAt === 'number') latencies.push(at - file.readyAt);
      files++;
      set.keep(file.bundleName, file.uri, file.fd);
    },
    onBundleBegin(err, name) {
      once(`begin ${name}`);
      if (err) errors.push(`${name}: onBundleBegin ${err.code} ${err.message}`);
    },
    onBundleEnd(err, name) {
      once(`end ${name}`);
      if (err) errors.push(`${name}: onBundleEnd ${err.code} ${err.message}`);
    },
    onResultReport: (name) => once(`result ${name}`),
    onAllBundlesEnd(err) {
      once('allEnd');
      if (err) errors.push(`onAllBundlesEnd ${err.code} ${err.message}`);
      allEnded();
    },
    onBackupServiceDied: () => serviceDied++,
  });
  try {
    await session.appendBundles(names);
    await withTimeout(ended, TIMEOUT_MS, `session ${session.sessionId}`);
    await set.flush();
  } finally {
    await session.release().catch((err) => errors.push(`release: ${err.message}`));
  }
  for (const name of names) if (!seen.has(`end ${name}`)) errors.push(`${name}: no onBundleEnd`);
  return { sessionId: session.sessionId, out, names, files, duplicates, serviceDied, errors };
}

/** Every bundle of every set against the device: problems, handed-over files checked, device files checked. */
async function verify(sessions, template) {
  let problems = [];
  let setFiles = 0;
  let deviceFiles = 0;
  for (const s of sessions) {
    for (const name of s.names) {
      const found = await compareBundleSet(s.out, dataRoot, name).catch((err) => [`${name}: ${err.message}`]);
      problems = problems.concat(found.map((p) => `${path.basename(s.out)}/${name}: ${p}`));
      if (found.length) continue;
      setFiles += (await readManageIndex(path.join(s.out, name, 'manage.json'))).files.length + 1;
      deviceFiles += template.get(name).files;
    }
  }
  return { problems, setFiles, deviceFiles };
}

const runs = [];
let server;
let client;
let exitCode = 0;
try {
  // ------------------------------------------------------------ device
  let t = performance.now();
  const templateDir = path.join(work, 'template');
  const kinds = await writeTemplate(templateDir, { scale: SCALE, seed: 20240611 });
  const bundleOf = new Map(); // copy name → its template bundle's summary
  const sessionBundles = [];
  for (let s = 0; s < SESSIONS; s++) {
    const names = [];
    for (let b = 0; b < BUNDLES; b++) {
      const kind = kinds[b % kinds.length];
      const name = `com.load.s${s}.b${b}`;
      await copyBundle(templateDir, kind.name, dataRoot, name);
      bundleOf.set(name, kind);
      names.push(name);
    }
    sessionBundles.push(names);
  }
  const deviceBytes = [...bundleOf.values()].reduce((n, k) => n + k.bytes, 0);
  log(
    `Device: ${SESSIONS} × ${BUNDLES} bundles (copies of ${kinds.map((k) => k.name).join(', ')} at scale ${SCALE}), ${mib(deviceBytes)}, in ${secs(performance.now() - t)}`,
  );

  // ------------------------------------------------------------ service
  if (address) {
    log(`Temporal service: ${address}`);
  } else {
    server = await startDevServer({ headless: true, port: 0, dbFile: path.join(work, 'temporal.db') });
    track(server.process);
    log(`Dev server ${server.address} (headless, temporary database)`);
  }
  client = new Client({ connection: await Connection.connect({ address: address ?? server.address }) });

  // ------------------------------------------------------------ runs
  for (const workerCount of WORKER_COUNTS) {
    const taskQueue = `ohbackup-load-${process.pid}-w${workerCount}`;
    backup.configure({ client, taskQueue });
    t = performance.now();
    const workers = await Promise.all(
      Array.from({ length: workerCount }, (_, i) =>
        startWorkerProcess({
          label: `worker ${i + 1}/${workerCount}`,
          address: address ?? server.address,
          dataRoot,
          stateDir: path.join(work, `worker-state-${workerCount}-${i}`),
          taskQueue,
          logFile: path.join(work, `worker-${workerCount}-${i}.log`),
        }),
      ),
    );
    log(`${workerCount} worker process(es) up (pids ${workers.map((w) => w.pid).join(', ')}) in ${secs(performance.now() - t)}`);
    const rss = workers.map((w) => watchRss(w.pid));
    const cpuAtStart = workers.map((w) => cpuSeconds(w.pid));
    const toolCpuAtStart = process.cpuUsage();
    const latencies = [];
    const started = performance.now();
    const settled = await Promise.allSettled(
      sessionBundles.map((names, s) => oneSession({ names, out: path.join(work, `sets-w${workerCount}`, `session-${s}`), latencies })),
    );
    const wallMs = performance.now() - started;
    const peaks = rss.map((r) => r.stop());
    const workerCpu = workers.map((w, i) => cpuSeconds(w.pid) - cpuAtStart[i]);
    const toolCpu = process.cpuUsage(toolCpuAtStart);
    await Promise.all(workers.map((w) => w.stop()));
    const sessions = settled.filter((r) => r.status === 'fulfilled').map((r) => r.value);
    const failed = settled.filter((r) => r.status === 'rejected').map((r) => String(r.reason?.message ?? r.reason));
    const errors = [...failed, ...sessions.flatMap((s) => s.errors)];
    t = performance.now();
    const v = await verify(sessions, bundleOf);
    log(`Verified ${sessions.length} sets in ${secs(performance.now() - t)}: ${v.problems.length} problems`);
    latencies.sort((a, b) => a - b);
    const run = {
      workers: workerCount,
      sessions: SESSIONS,
      bundlesPerSession: BUNDLES,
      sessionsCompleted: sessions.filter((s) => s.errors.length === 0).length,
      wallSeconds: wallMs / 1000,
      sessionsPerMinute: (sessions.length / wallMs) * 60_000,
      filesHandedOver: sessions.reduce((n, s) => n + s.files, 0),
      callbackLatencyMs: {
        samples: latencies.length,
        p50: quantile(latencies, 0.5),
        p95: quantile(latencies, 0.95),
        max: latencies.at(-1) ?? NaN,
      },
      workerPeakRssBytes: peaks.map((p) => p.peak),
      workerPeakRssByVmHWM: peaks.every((p) => p.hwm !== undefined),
      /** CPU seconds used during the run: each worker process, and this tool process (all sessions' callbacks, pumps, set writing). */
      workerCpuSeconds: workerCpu,
      toolCpuSeconds: (toolCpu.user + toolCpu.system) / 1e6,
      loadAverage1m: os.loadavg()[0],
      setFilesVerified: v.setFiles,
      deviceFilesVerified: v.deviceFiles,
      verificationProblems: v.problems,
      duplicateCallbacks: sessions.reduce((n, s) => n + s.duplicates, 0),
      serviceDiedNotices: sessions.reduce((n, s) => n + s.serviceDied, 0),
      errors,
    };
    runs.push(run);
    log(
      `${workerCount} worker(s): ${run.sessionsCompleted}/${SESSIONS} sessions in ${secs(wallMs)} (${run.sessionsPerMinute.toFixed(1)}/min), ` +
        `latency p95 ${run.callbackLatencyMs.p95} ms, max ${run.callbackLatencyMs.max} ms, peak RSS ${run.workerPeakRssBytes.map(mib).join(' + ')}`,
    );
    if (run.verificationProblems.length || run.duplicateCallbacks || run.errors.length || run.sessionsCompleted !== SESSIONS) exitCode = 1;
  }
} catch (err) {
  log(`load run FAILED: ${err?.stack ?? err}`);
  exitCode = 1;
} finally {
  await client?.connection.close().catch(() => undefined);
  await server?.stop().catch(() => undefined);
}

// ---------------------------------------------------------------- report
const report = {
  startedAt: startedAt.toISOString(),
  host: { cpus: os.cpus().length, loadAverageAtEnd: os.loadavg(), node: process.version },
  options: { sessions: SESSIONS, bundlesPerSession: BUNDLES, scale: SCALE, workers: WORKER_COUNTS, address: address ?? null },
  latencyDefinition:
    'onFileReady latency: tool clock at the callback start minus file.readyAt, the moment the worker handed the file over (its event made, after the send-rate token); same machine clock',
  runs,
  ok: exitCode === 0,
};
mkdirSync(path.dirname(jsonPath), { recursive: true });
writeFileSync(jsonPath, JSON.stringify(report, null, 2) + '\n');
if (runs.length) {
  console.log(
    formatTable(
      ['workers', 'sessions', 'sessions/min', 'p50 ms', 'p95 ms', 'max ms', 'peak RSS', 'files verified', 'problems', 'duplicates', 'errors'],
      runs.map((r) => [
        String(r.workers),
        `${r.sessionsCompleted}/${r.sessions}×${r.bundlesPerSession}`,
        r.sessionsPerMinute.toFixed(1),
        String(r.callbackLatencyMs.p50),
        String(r.callbackLatencyMs.p95),
        String(r.callbackLatencyMs.max),
        r.workerPeakRssBytes.map(mib).join(' + '),
        `${r.setFilesVerified} (${r.deviceFilesVerified} device files)`,
        String(r.verificationProblems.length),
        String(r.duplicateCallbacks),
        String(r.errors.length),
      ]),
      [2, 3, 4, 5, 8, 9, 10],
    ),
  );
  for (const r of runs) for (const line of [...r.errors, ...r.verificationProblems].slice(0, 10)) console.log(`  ${r.workers} worker(s): ${line}`);
}
console.log(`\nJSON: ${jsonPath}`);
process.exit(exitCode);
