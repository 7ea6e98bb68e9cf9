// `node scripts/traceBackup.js [--quick] [--runs N] [--restore] [--keep]`
//
// Where a backup's (and a restore's) wall time goes, for the work before an
// A/B: a headless dev server with a temporary database, a backup worker in
// its own process, the bench's data set (a tenth with `--quick`); then
// `--runs` (default 3) full backups through runBackup at 800/s, and with
// `--restore` two restores of the last set, each by a worker of its own onto
// a fresh data root. For each it prints, in ms from the session's start, the
// tool's events (progress: start, begins, each bundle's first file, ends,
// return) and every event of every workflow of the session (its runs and its
// bundle children: tasks, activities, updates, signals, markers), with the
// workers' and the dev server's CPU time meanwhile. Wall times on a loaded
// machine say little; the order of the events and the gaps between them are
// what to read. --keep leaves the work folder (printed) in place: on an ext4
// without a journal, as on this project's test machines, creating files within
// minutes of removing many (the kernel skips recently deleted inodes) costs
// several times more system time, so runs back to back must not remove their
// trees in between; remove them after the last.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { datasetShape, writeDataset } from '../bench/dataset.js';
import { strictOptions } from '../bench/args.js';
import { cpuMs, killAllSync, startServiceAndWorker, startWorkerProcess } from '../bench/procs.js';
import { getClient } from '../dist/client/connection.js';
import { restoreFromSet } from '../dist/client/runs/restoreSession.js';
import { runBackup } from '../dist/client/runs/runBackup.js';

const USAGE = 'Usage: node scripts/traceBackup.js [--quick] [--runs N] [--restore] [--keep]';

const values = strictOptions(USAGE, {
  quick: { type: 'boolean' },
  runs: { type: 'string' },
  restore: { type: 'boolean' },
  keep: { type: 'boolean' },
});
const runs = values.runs === undefined ? 3 : Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`--runs wants a whole number of at least 1, got ${values.runs}\n${USAGE}`);
  process.exit(2);
}

const stateDir = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup');
const work = path.join(stateDir, 'bench', `trace-${new Date().toISOString().replace(/[:.]/g, '-')}`);
const dataRoot = path.join(work, 'device');
mkdirSync(dataRoot, { recursive: true, mode: 0o700 });
process.on('exit', () => {
  killAllSync();
  if (values.keep) console.log(`work folder kept: ${work}`);
  else rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const shape = datasetShape(values.quick === true);
writeDataset(dataRoot, shape, 20240601);
const bundles = Array.from({ length: shape.bundles }, (_, i) => `com.bench.app${i}`);
const { server, worker } = await startServiceAndWorker({ work, dataRoot, queue: 'ohbackup-trace' });
/** A restore worker of its own per restore, on a fresh data root: file creation right after a tree's removal is slow on ext4. */
async function restoreWorkerFor(i) {
  const taskQueue = `ohbackup-trace-restore-${process.pid}-${i}`;
  mkdirSync(path.join(work, `restore-root-${i}`), { mode: 0o700 });
  const w = await startWorkerProcess({
    label: `restore ${i}`,
    address: server.address,
    dataRoot: path.join(work, `restore-root-${i}`),
    stateDir: path.join(work, `restore-state-${i}`),
    taskQueue,
    logFile: path.join(work, `restore-worker-${i}.log`),
  });
  return { worker: w, taskQueue };
}

const ms = (t) => (t ? Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6 : NaN);
const short = (type) => type.replace('workflowExecution', 'wx').replace('workflowTask', 'wt');

/** Every event of the session's workflows (its runs and its children), by workflow. */
async function histories(sessionId) {
  const client = await getClient();
  const out = [];
  for await (const w of client.workflow.list({ query: `WorkflowId = "${sessionId}" OR WorkflowId STARTS_WITH "${sessionId}/"` })) {
    const { events = [] } = await client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
    out.push({
      id: w.workflowId === sessionId ? `session ${w.runId.slice(0, 8)}` : w.workflowId.slice(sessionId.length + 1),
      events: events.map((e) => {
        const key = Object.keys(e).find((k) => k.endsWith('EventAttributes'));
        const a = e[key];
        const name = a?.activityType?.name ?? a?.signalName ?? a?.workflowType?.name ?? a?.acceptedRequest?.input?.name ?? a?.markerName ?? '';
        return { t: ms(e.eventTime), type: key.replace('EventAttributes', ''), name };
      }),
    });
  }
  return out;
}

/** Runs `step` (given an emit for the tool's events), then prints its timeline from the session's start. */
async function trace(label, step, restoreWorker) {
  const tool = [];
  let sessionId;
  const cpu0 = [cpuMs(worker.pid), cpuMs(server.process.pid), restoreWorker ? cpuMs(restoreWorker.pid) : 0];
  const called = Date.now();
  const files = new Map();
  await step((e) => {
    if (e.type === 'start') sessionId = e.sessionId;
    // A bundle's first file only: the rest would bury the other events.
    if (e.type === 'file' && files.has(e.bundleName)) return;
    if (e.type === 'file') files.set(e.bundleName, true);
    tool.push([Date.now(), `${e.type}${e.bundleName ? `:${e.bundleName.replace('com.bench.', '')}` : ''}`]);
  });
  const returned = Date.now();
  const cpu1 = [cpuMs(worker.pid), cpuMs(server.process.pid), restoreWorker ? cpuMs(restoreWorker.pid) : 0];
  const t0 = tool.find(([, what]) => what === 'start')?.[0] ?? called;
  console.log(
    `\n${label}: ${returned - t0} ms from the session's start (${returned - called} from the call); CPU backup worker ${cpu1[0] - cpu0[0]} ms, ` +
      `restore worker ${cpu1[2] - cpu0[2]} ms, dev server ${cpu1[1] - cpu0[1]} ms`,
  );
  console.log(`  tool: ${[[called, 'call'], ...tool, [returned, 'returned']].map(([t, what]) => `${t - t0} ${what}`).join(' | ')}`);
  // The last events (a release's completion) are listed a moment after the call returns.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  for (const h of await histories(sessionId)) {
    console.log(`  ${h.id} (${h.events.length} events)`);
    console.log(`    ${h.events.map((e) => `${Math.round(e.t - t0)}:${short(e.type)}${e.name ? `(${e.name})` : ''}`).join(' ')}`);
  }
}

try {
  for (let i = 1; i <= runs; i++) {
    await trace(`backup ${i}/${runs}`, (emit) => runBackup({ out: path.join(work, `set-${i}`), bundles, rate: 800, onProgress: emit }));
  }
  if (values.restore) {
    for (let i = 1; i <= 2; i++) {
      const { worker: restoreWorker, taskQueue } = await restoreWorkerFor(i);
      await trace(
        `restore ${i}/2`,
        (emit) => restoreFromSet({ from: path.join(work, `set-${runs}`), bundles, session: { taskQueue }, onProgress: emit }),
        restoreWorker,
      );
      await restoreWorker.stop();
    }
  }
} finally {
  killAllSync();
}
process.exit(0);
