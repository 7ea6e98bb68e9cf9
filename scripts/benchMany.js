// `node scripts/benchMany.js [--bundles N] [--small N] [--rate R] [--runs N] [--cpu-prof]`
//
// Only the bench's orchestration steps (scripts/bench.js), for A/B work: a
// headless dev server with a temporary database, one backup worker process,
// then `--runs` (default 3) of one step:
// - by default, sessions of `--bundles` empty bundles (default 1 000), each
//   timed from the session's start to onAllBundlesEnd;
// - `--small N`: runBackup of N bundles of 20 small files (the bench's
//   "Temporal cost" step at N = 50), timed as the bench times it;
// - `--rate R`: the hand-over at send rate R (a bundle of R × 5 sparse
//   2.1 MiB files), its rate as the bench computes it.
// Each run: its history events per bundle, by workflow kind and event type
// (signals by name), and the CPU time the worker and the dev server spent
// meanwhile (/proc: comparable on a loaded machine, where the wall time is
// not). With `--cpu-prof` the worker runs under node --cpu-prof (profiles in
// the work folder, kept). Prints one JSON line with every run's figures and
// their medians.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeEmptyBundles, writeRateBundles, writeSmallBundles } from '../bench/dataset.js';
import { fullBackup, handOverRate, manyBundles } from '../bench/ohbackup.js';
import { quiesce, temporalCost } from '../bench/temporalCost.js';
import { cpuMs, killAllSync, startServiceAndWorker } from '../bench/procs.js';
import { median } from '../bench/report.js';
import { strictOptions, wholeNumber } from '../bench/args.js';

const USAGE = 'Usage: node scripts/benchMany.js [--bundles N] [--small N] [--rate R] [--runs N] [--cpu-prof]';

// Strict (bench/args.js): an unknown or misspelt option is refused and --help prints the usage; neither starts the 1 000-bundle run.
const values = strictOptions(USAGE, {
  bundles: { type: 'string' },
  small: { type: 'string' },
  rate: { type: 'string' },
  runs: { type: 'string' },
  'cpu-prof': { type: 'boolean' },
});
const count = (name, fallback) => wholeNumber(values, name, fallback, USAGE);
const small = count('small', 0);
const rate = count('rate', 0);
const bundles = small || (rate ? 1 : count('bundles', 1000));
const runs = count('runs', 3);
const cpuProf = values['cpu-prof'] === true;

const stateDir = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup');
const work = path.join(stateDir, 'bench', `many-${new Date().toISOString().replace(/[:.]/g, '-')}`);
const dataRoot = path.join(work, 'device');
mkdirSync(dataRoot, { recursive: true, mode: 0o700 });
const log = (line) => process.stderr.write(`${line}\n`);
process.on('exit', () => {
  killAllSync();
  if (!cpuProf) rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const names = small
  ? writeSmallBundles(dataRoot, small, 20, 20247000)
  : rate
    ? [writeRateBundles(dataRoot, { [rate]: rate * 5 })[rate].name]
    : writeEmptyBundles(dataRoot, bundles);
const { server, worker } = await startServiceAndWorker({
  work,
  dataRoot,
  queue: 'ohbackup-bench-many',
  nodeArgs: cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${work}`] : [],
});

/** CPU seconds (user + system) a process has used so far. */
const cpuS = (pid) => cpuMs(pid) / 1000;
const figures = [];
for (let i = 0; i < runs; i++) {
  await quiesce();
  const since = Date.now();
  const cpu0 = [cpuS(worker.pid), cpuS(server.process.pid)];
  const x = small
    ? await fullBackup({ out: path.join(work, `set-${i}`), bundles: names, rate: 800, timeoutMs: 30 * 60_000 })
    : rate
      ? await handOverRate({ bundle: names[0], rate, timeoutMs: 30 * 60_000 })
      : await manyBundles({ bundles: names, timeoutMs: 30 * 60_000 });
  const cpu = [cpuS(worker.pid) - cpu0[0], cpuS(server.process.pid) - cpu0[1]];
  const cost = await temporalCost({ sessionId: x.sessionId, sinceMs: since, expectBundles: bundles });
  const f = {
    s: +((x.ms ?? x.spanS * 1000) / 1000).toFixed(2),
    ...(rate ? { rate: +x.slope.toFixed(1), received: +x.received.slope.toFixed(1), longestGaps: x.longestGaps } : {}),
    workerCpuS: +cpu[0].toFixed(2),
    serverCpuS: +cpu[1].toFixed(2),
    perBundle: +(cost.total / bundles).toFixed(1),
    serviceDied: x.serviceDied,
    byKind: cost.byKind,
  };
  figures.push(f);
  const what = small ? `${bundles} small bundles` : rate ? `the hand-over at ${rate}/s` : `${bundles} empty bundles`;
  log(
    `run ${i + 1}: ${what} in ${f.s} s${rate ? ` (${f.rate}/s)` : ''} (CPU: worker ${f.workerCpuS} s, server ${f.serverCpuS} s), ${f.perBundle} events per bundle${x.serviceDied ? `, onBackupServiceDied × ${x.serviceDied}` : ''}`,
  );
}
console.log(
  JSON.stringify({
    bundles,
    ...(small ? { small } : rate ? { rate, medianRate: median(figures.map((f) => f.rate)) } : {}),
    medianS: median(figures.map((f) => f.s)),
    medianWorkerCpuS: median(figures.map((f) => f.workerCpuS)),
    medianServerCpuS: median(figures.map((f) => f.serverCpuS)),
    medianPerBundle: median(figures.map((f) => f.perBundle)),
    runs: figures,
    ...(cpuProf ? { profiles: work } : {}),
  }),
);
// Gracefully (SIGTERM, then SIGKILL after a bound): a worker under --cpu-prof writes its profile as it exits.
await worker.stop();
await server.stop().catch(() => undefined);
process.exit(0);
