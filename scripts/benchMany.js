// `node scripts/benchMany.js [--bundles N] [--runs N] [--cpu-prof]`
//
// Only the bench's "empty bundles" step (scripts/bench.js), for A/B work on
// the orchestration: a headless dev server with a temporary database, one
// backup worker process, then `--runs` sessions of `--bundles` empty bundles
// (default 1 000, 3 runs), each timed from the session's start to
// onAllBundlesEnd, its history events per bundle, and the CPU time the worker
// and the dev server spent meanwhile (/proc: comparable on a loaded machine,
// where the wall time is not). With `--cpu-prof` the
// worker runs under node --cpu-prof (profiles in the work folder, kept).
// Prints one JSON line with every run's figures and their medians.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeEmptyBundles } from '../bench/dataset.js';
import { manyBundles } from '../bench/ohbackup.js';
import { quiesce, temporalCost } from '../bench/temporalCost.js';
import { cpuMs, killAllSync, startServiceAndWorker } from '../bench/procs.js';
import { median } from '../bench/report.js';

const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = argv.indexOf(name);
  return i < 0 ? fallback : Number(argv[i + 1]);
};
const bundles = flag('--bundles', 1000);
const runs = flag('--runs', 3);
const cpuProf = argv.includes('--cpu-prof');

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

const names = writeEmptyBundles(dataRoot, bundles);
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
  const x = await manyBundles({ bundles: names, timeoutMs: 30 * 60_000 });
  const cpu = [cpuS(worker.pid) - cpu0[0], cpuS(server.process.pid) - cpu0[1]];
  const cost = await temporalCost({ sessionId: x.sessionId, sinceMs: since, expectBundles: bundles });
  const f = {
    s: +(x.ms / 1000).toFixed(2),
    workerCpuS: +cpu[0].toFixed(2),
    serverCpuS: +cpu[1].toFixed(2),
    perBundle: +(cost.total / bundles).toFixed(1),
    serviceDied: x.serviceDied,
    byKind: cost.byKind,
  };
  figures.push(f);
  log(
    `run ${i + 1}: ${bundles} empty bundles in ${f.s} s (CPU: worker ${f.workerCpuS} s, server ${f.serverCpuS} s), ${f.perBundle} events per bundle${x.serviceDied ? `, onBackupServiceDied × ${x.serviceDied}` : ''}`,
  );
}
console.log(
  JSON.stringify({
    bundles,
    medianS: median(figures.map((f) => f.s)),
    medianWorkerCpuS: median(figures.map((f) => f.workerCpuS)),
    medianServerCpuS: median(figures.map((f) => f.serverCpuS)),
    medianPerBundle: median(figures.map((f) => f.perBundle)),
    runs: figures,
    ...(cpuProf ? { profiles: work } : {}),
  }),
);
process.exit(0);
