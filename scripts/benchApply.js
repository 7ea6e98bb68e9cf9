// `node scripts/benchApply.js [--pairs N] [--a DIST] [--b DIST] [--threads-a N] [--threads-b N] [--work DIR]`
//
// A restore's apply on the engine alone, A/B: the bench's full data set is packed once (by A's packBundle), then
// each run, in a process of its own, copies the packed set into fresh restore folders, syncs, waits 5 s, and times
// `applyRestore` of its 8 bundles at once through `runOffThread` of its build (DIST: a built `dist/`, default this
// tree's) with OHBACKUP_ENGINE_THREADS as given (default: the pool's own choice). A and B alternate. Nothing is
// removed between runs: file creation after a tree's removal is slow on ext4 (`recently_deleted`,
// docs/design/performance.md), so the work folder (some 1.5 GB a run) is removed only at the end. Prints one line
// per run (wall, the process's user and system CPU, when the last byte was written, its peak RSS) and the medians.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { strictOptions, wholeNumber } from '../bench/args.js';
import { datasetShape, writeDataset } from '../bench/dataset.js';

const USAGE = 'Usage: node scripts/benchApply.js [--pairs N] [--a DIST] [--b DIST] [--threads-a N] [--threads-b N] [--work DIR]';
const here = path.resolve(import.meta.dirname, '..', 'dist');
const values = strictOptions(USAGE, {
  pairs: { type: 'string' },
  a: { type: 'string' },
  b: { type: 'string' },
  'threads-a': { type: 'string' },
  'threads-b': { type: 'string' },
  work: { type: 'string' },
  'run-one': { type: 'string' }, // internal: one timed run of this build, in this process
});
const bundles = Array.from({ length: 8 }, (_, i) => `com.bench.app${i}`);
const work = path.resolve(values.work ?? path.join(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup', 'bench', 'apply'));
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

/** CPU of this process (all its threads) so far, from /proc: user and system, ms. */
function cpu() {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) * 10, sys: Number(f[12]) * 10 };
}

async function runOne(dist) {
  const run = path.join(work, `run-${process.pid}`);
  for (const b of bundles) {
    mkdirSync(path.join(run, b, 'data'), { recursive: true });
    execFileSync('cp', ['-r', path.join(work, 'packed', b), path.join(run, b, 'files')]);
  }
  execFileSync('sync');
  await new Promise((resolve) => setTimeout(resolve, 5000));
  const { runOffThread } = await import(pathToFileURL(path.join(dist, 'engine', 'offThread.js')).href);
  const c0 = cpu();
  const t0 = performance.now();
  let lastByte = 0;
  await Promise.all(
    bundles.map((b) => {
      let bytes = -1;
      const job = { bundleName: b, restoreDir: path.join(run, b, 'files'), dataDir: path.join(run, b, 'data'), stagingDir: path.join(run, b, 'staging') };
      const onProgress = (p) => {
        if (p.bytes !== bytes) [bytes, lastByte] = [p.bytes, performance.now() - t0];
      };
      return runOffThread('restore', { ...job, mode: 'apply' }, { onProgress });
    }),
  );
  const wall = performance.now() - t0;
  const c1 = cpu();
  const hwm = Number(readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)[1]) / 1024;
  const out = { wall, user: c1.user - c0.user, sys: c1.sys - c0.sys, lastByte, hwm };
  console.log(JSON.stringify(out));
}

if (values['run-one']) {
  await runOne(values['run-one']);
  process.exit(0);
}

const pairs = wholeNumber(values, 'pairs', 5, USAGE);
const sides = [
  { name: 'A', dist: path.resolve(values.a ?? here), threads: values['threads-a'] },
  { name: 'B', dist: path.resolve(values.b ?? here), threads: values['threads-b'] },
];
mkdirSync(work, { recursive: true, mode: 0o700 });
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const { packBundle } = await import(pathToFileURL(path.join(sides[0].dist, 'engine', 'pack', 'index.js')).href);
writeDataset(path.join(work, 'device'), datasetShape(false), 20240601);
for (const b of bundles)
  await packBundle({ bundleName: b, dataDir: path.join(work, 'device', b, 'data'), outDir: path.join(work, 'packed', b), profile: { excludes: [] } });
const results = { A: [], B: [] };
for (let i = 0; i < pairs; i++) {
  for (const s of sides) {
    const env = { ...process.env };
    if (s.threads === undefined) delete env.OHBACKUP_ENGINE_THREADS;
    else env.OHBACKUP_ENGINE_THREADS = s.threads;
    const args = [import.meta.filename, '--work', work, '--run-one', s.dist];
    const child = spawnSync(process.execPath, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (child.status !== 0) throw new Error(`run ${s.name} ${i + 1} failed (${child.status})`);
    const r = JSON.parse(child.stdout.trim().split('\n').at(-1));
    results[s.name].push(r);
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
    console.log(
      `${s.name} ${i + 1}: wall ${Math.round(r.wall)} ms, CPU user ${r.user} sys ${r.sys} ms, last byte ${Math.round(r.lastByte)} ms, peak RSS ${r.hwm.toFixed(1)} MiB, load ${load}`,
    );
  }
}
for (const s of sides) {
  const rs = results[s.name];
  const m = (k) => Math.round(median(rs.map((r) => r[k])));
  console.log(
    `${s.name} (${s.dist}, threads ${s.threads ?? 'default'}) medians: wall ${m('wall')} ms, CPU ${m('user') + m('sys')} ms (user ${m('user')}, sys ${m('sys')}), peak RSS ${m('hwm')} MiB`,
  );
}
