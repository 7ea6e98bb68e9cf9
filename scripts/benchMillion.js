// `node scripts/benchMillion.js [--files N] [--seed N]` (build first)
//
// The bench's million-file step alone (bench/scale.js millionFiles, what `npm run bench -- --million` adds after
// the default run): a headless dev server, a backup worker and a restore worker (each its own data root and task
// queue, as the bench starts them), then one bundle of `--files` (default 1 000 000) tiny files written, backed up
// and restored, both verified, each worker's RSS watched and the backup's histories counted. The bench's
// warm-up and other steps are not run first, so the workers start it fresh. Prints one line of JSON.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { millionFiles } from '../bench/scale.js';
import { killAllSync, startWorkerProcess, track } from '../bench/procs.js';
import { strictOptions, wholeNumber } from '../bench/args.js';

const USAGE = 'Usage: node scripts/benchMillion.js [--files N] [--seed N]';

// Strict (bench/args.js): an unknown or misspelt option is refused and --help prints the usage; neither starts a run.
const values = strictOptions(USAGE, { files: { type: 'string' }, seed: { type: 'string' } });
const files = wholeNumber(values, 'files', 1_000_000, USAGE);
const seed = wholeNumber(values, 'seed', 20240601, USAGE);
// The bench's rate and bound for this step (scripts/bench.js).
const RATE = 800;
const TIMEOUT_MS = 120 * 60_000;

const work = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup', 'bench', `million-${process.pid}`);
const dataRoot = path.join(work, 'device');
const restoreRoot = path.join(work, 'restore-root');
mkdirSync(dataRoot, { recursive: true, mode: 0o700 });
mkdirSync(restoreRoot, { recursive: true, mode: 0o700 });
process.on('exit', () => {
  killAllSync();
  rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
const log = (line) => process.stderr.write(`${line}\n`);

const { startDevServer } = await import('../dist/workers/devServer.js');
const server = await startDevServer({ headless: true, port: 0, dbFile: path.join(work, 'temporal.db') });
track(server.process);
process.env.TEMPORAL_ADDRESS = server.address;
const backupQueue = `ohbackup-bench-million-${process.pid}`;
const restoreQueue = `ohbackup-bench-million-restore-${process.pid}`;
process.env.OHBACKUP_TASK_QUEUE = backupQueue;
const worker = (label, root, taskQueue) =>
  startWorkerProcess({
    label,
    address: server.address,
    dataRoot: root,
    stateDir: path.join(work, `${label}-state`),
    taskQueue,
    logFile: path.join(work, `worker-${label}.log`),
  });
const [backup, restore] = await Promise.all([worker('backup', dataRoot, backupQueue), worker('restore', restoreRoot, restoreQueue)]);
log(`dev server ${server.address}; backup worker pid ${backup.pid}, restore worker pid ${restore.pid}`);

try {
  const x = await millionFiles({
    dataRoot,
    restoreRoot,
    work,
    files,
    seed: seed + 11000,
    rate: RATE,
    workers: { backup, restore },
    restoreQueue,
    timeoutMs: TIMEOUT_MS,
    log,
  });
  console.log(JSON.stringify(x));
} catch (err) {
  log(`the million step failed: ${err instanceof Error ? err.stack : String(err)}`);
  for (const w of [backup, restore]) log(`--- ${w.label} worker output (tail):\n${w.tail()}`);
  process.exitCode = 1;
} finally {
  await Promise.all([backup.stop(), restore.stop()]);
  await server.stop?.();
}
