// `node scripts/benchIncrement.js [--quick] [--runs N] [--seed N] [--idle S] [--trace] [--cpu-prof]` (build first)
//
// The bench's increment step alone (bench/increment.js): a headless dev server, one backup worker
// process, the bench's data set, an untimed base and one untimed increment (warm-up), then N increments,
// each after 1% of the small files changed and an untimed `sync`, as the bench times them. --trace
// prints where each increment's time went: the tool's callbacks and the session's and children's
// history events, in ms from the session's start. --cpu-prof profiles the worker (every thread, in
// .ohbackup/bench/increment-prof-<pid>/; each increment's window, monotonic µs, is in its JSON line).
// --idle S waits S seconds before each timed increment: the worker then starts it idle, as a scheduled
// increment finds it (its engine threads end after 10 s without a job).
// The worker's, the server's and the tool's CPU time per increment are printed too (load-independent
// more than the wall time). To compare two builds, run each in its own tree,
// alternated; every figure is one line of JSON on stdout.
import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { changeOnePercent, datasetShape, writeDataset } from '../bench/dataset.js';
import { incrementalRun } from '../bench/increment.js';
import { cpuMs, killAllSync, settle, startServiceAndWorker } from '../bench/procs.js';
import { strictOptions, wholeNumber } from '../bench/args.js';

const USAGE = 'Usage: node scripts/benchIncrement.js [--quick] [--runs N] [--seed N] [--idle S] [--trace] [--cpu-prof]';

// Strict (bench/args.js): an unknown or misspelt option is refused and --help prints the usage; neither starts a run.
const values = strictOptions(USAGE, {
  quick: { type: 'boolean' },
  runs: { type: 'string' },
  seed: { type: 'string' },
  idle: { type: 'string' },
  trace: { type: 'boolean' },
  'cpu-prof': { type: 'boolean' },
});
const count = (name, fallback) => wholeNumber(values, name, fallback, USAGE);
const quick = values.quick === true;
const runs = count('runs', 3);
const seed = count('seed', 20240601);
const idleMs = count('idle', 0) * 1000;
const trace = values.trace === true;
const cpuProf = values['cpu-prof'] === true;
const RATE = 800;
const TIMEOUT_MS = 10 * 60_000;

const work = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup', 'bench', `increment-${process.pid}`);
mkdirSync(work, { recursive: true, mode: 0o700 });
process.on('exit', () => {
  killAllSync();
  rmSync(work, { recursive: true, force: true });
});
const log = (line) => process.stderr.write(`${line}\n`);

/** ms since the epoch of a history event. */
const at = (ev) => Number(ev.eventTime.seconds) * 1000 + Math.floor(ev.eventTime.nanos / 1e6);
const decode = (payloads) => {
  try {
    return JSON.parse(Buffer.from(payloads?.payloads?.[0]?.data ?? []).toString());
  } catch {
    return undefined;
  }
};

/** The session's and its children's history events as [ms, where, what] lines, the tool's marks among them. */
async function timeline(client, sessionId, names, marks, t0) {
  const lines = marks.map(([t, what, name]) => [t - t0, 'tool', name ? `${what} ${name}` : what]);
  const add = async (id, where) => {
    const history = await client.workflow.getHandle(id).fetchHistory();
    for (const ev of history.events ?? []) {
      const type = String(proto.temporal.api.enums.v1.EventType[ev.eventType] ?? ev.eventType).replace(/^EVENT_TYPE_/, '');
      let what = type;
      const a = ev.workflowExecutionSignaledEventAttributes;
      if (a) {
        const body = decode(a.input);
        what = `signal ${a.signalName}${Array.isArray(body) ? ` [${body.map((e) => e.type).join(',')}]` : body !== undefined ? ` ${JSON.stringify(body).slice(0, 40)}` : ''}`;
      }
      const s = ev.activityTaskScheduledEventAttributes;
      if (s) what = `${type} ${s.activityType?.name}`;
      const u = ev.workflowExecutionUpdateAcceptedEventAttributes;
      if (u) what = `${type} ${u.acceptedRequest?.input?.name}`;
      lines.push([at(ev) - t0, where, what]);
    }
  };
  await add(sessionId, 'session');
  for (const [i, n] of names.entries()) await add(`${sessionId}/${n}`, `child${i}`);
  return lines.sort((a, b) => a[0] - b[0]);
}

const ownCpu = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

let server;
try {
  const shape = datasetShape(quick);
  const dataRoot = path.join(work, 'device');
  const dataset = writeDataset(dataRoot, shape, seed);
  const names = dataset.bundles.map((b) => b.name);
  let worker;
  ({ server, worker } = await startServiceAndWorker({
    work,
    dataRoot,
    queue: 'ohbackup-bench-inc',
    // Every thread's profile, written when the worker stops (SIGTERM: it shuts down and exits).
    nodeArgs: cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve('.ohbackup', 'bench', `increment-prof-${process.pid}`)}`] : [],
  }));
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  let n = 0;
  const run = async (base) => {
    const marks = [];
    const t0 = Date.now();
    const r = await incrementalRun({
      bundles: names,
      base,
      out: path.join(work, `set-${n}`),
      manifestDir: path.join(work, `manifests-${n++}`),
      rate: RATE,
      timeoutMs: TIMEOUT_MS,
      mark: (what, name) => marks.push([Date.now(), what, name]),
    });
    return { ...r, marks, t0 };
  };
  let base = (await run(undefined)).manifests;
  changeOnePercent(dataset, seed + 999);
  await settle();
  base = (await run(base)).manifests;
  log(`base and warm-up increment done (${dataset.files} files, ${names.length} bundles)`);
  for (let r = 0; r < runs; r++) {
    const changed = changeOnePercent(dataset, seed + 1000 + r);
    await settle();
    if (idleMs) await new Promise((resolve) => setTimeout(resolve, idleMs));
    const cpu0 = [cpuMs(worker.pid), cpuMs(server.process.pid), ownCpu()];
    // The monotonic clock the profiles' timestamps use (µs): the increment's window in them.
    const from = Number(process.hrtime.bigint() / 1000n);
    const inc = await run(base);
    const to = Number(process.hrtime.bigint() / 1000n);
    const [workerCpuMs, serverCpuMs, toolCpuMs] = [cpuMs(worker.pid), cpuMs(server.process.pid), ownCpu()].map((c, i) => Math.round(c - cpu0[i]));
    base = inc.manifests;
    const load = Number(os.loadavg()[0].toFixed(1));
    console.log(
      JSON.stringify({
        run: r + 1,
        ms: Math.round(inc.ms),
        workerCpuMs,
        serverCpuMs,
        toolCpuMs,
        files: inc.files,
        changed: changed.files,
        load,
        ...(cpuProf ? { window: [from, to] } : {}),
      }),
    );
    if (trace) {
      for (const [ms, where, what] of await timeline(client, inc.sessionId, names, inc.marks, inc.t0))
        log(`${String(ms).padStart(6)}  ${where.padEnd(8)} ${what}`);
    }
  }
  await client.connection.close();
  if (cpuProf) await worker.stop();
} finally {
  killAllSync();
  await server?.stop().catch(() => undefined);
}
process.exit(0);
