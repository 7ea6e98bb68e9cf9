// `npm run soak -- --minutes N [--lanes 2] [--workers 2] [--scale 0.03] [--seed S] [--no-kills] [--no-server-restarts] [--keep] [--json-out FILE]`
//
// For N minutes, random sessions against one device while it is being hurt:
// worker processes (`node dist/workers/main.js`, `--workers` of them on the
// device's task queue) are killed with SIGKILL at random moments and started
// again, and the Temporal dev server (its own database file in the work
// folder) is killed and restarted on the same port and database.
//
// Each lane (`--lanes`, run side by side) owns its own copies of the sample
// device's backup-able bundles and runs one session after another, chosen at
// random: a full backup (`runBackup`, the code of `ohbackup backup`), a full
// incremental backup (`--incremental`), an increment on the lane's latest
// incremental set (after random edits of the bundles' data), or a restore of
// one of the lane's earlier sets (`runRestore`, the code of `ohbackup
// restore`: a chain for an increment) into other bundles of the device
// (`<bundle>.r`, app_mapping_relation).
//
// Checks: every bundle a backup reports done is verified byte for byte
// against the device (a full set with compareBundleSet; an increment: its
// files against its index and the device, its new manifest against the
// device); every bundle a restore reports done against the device's data at
// the time of the set it came from (entries, bytes, modes, mtimes).
// Duplicate callbacks are counted from the commands' progress events: a
// second onBundleBegin or onBundleEnd of a bundle in a session, or more
// onFileReady than the bundle has files. Files lost: a file of a bundle
// reported done that is missing or has other bytes (backups and restores).
//
// Prints sessions started/completed/failed (with reasons), files verified,
// files lost (must be 0), duplicate callbacks (must be 0), faults injected;
// writes the same as JSON into <OHBACKUP_STATE_DIR or .ohbackup>/soak/soak-<time>.json.
// Exit 1 when a file was lost, a callback came twice, or no session completed.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backup } from '../dist/client/index.js';
import { runBackup } from '../dist/client/runs/runBackup.js';
import { planRestore, runRestore } from '../dist/client/runs/runRestore.js';
import { readManageIndex } from '../dist/engine/formats/manageIndex.js';
import { compareBundleSet } from '../dist/client/sets/verify.js';
import { bundlePaths } from '../dist/common/device.js';
import { startDevServer } from '../dist/workers/devServer.js';
import { formatTable } from '../bench/report.js';
import { killAllSync, startWorkerProcess, track } from '../bench/procs.js';
import { secs } from '../bench/report.js';
import { copyBundle, writeTemplate } from '../bench/sampleCopies.js';
import { checkIncrement, compareSnapshots, filesIn, mutateBundle, prng, snapshotBundle, snapshotDir } from '../bench/soakCheck.js';
import { optionReader } from '../bench/args.js';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(
    `Usage: npm run soak -- --minutes N [--lanes 2] [--workers 2] [--scale 0.03] [--seed S] [--no-kills] [--no-server-restarts] [--keep] [--json-out FILE]`,
  );
  process.exit(0);
}
const { value, number } = optionReader(argv);
const MINUTES = number('--minutes', 10, { min: 0.1, integer: false });
const LANES = number('--lanes', 2);
const WORKERS = number('--workers', 2);
const SCALE = number('--scale', 0.03, { min: 0.001, integer: false });
const SEED = number('--seed', Date.now() % 1_000_000, { min: 0 });
const KILLS = !argv.includes('--no-kills');
const SERVER_RESTARTS = !argv.includes('--no-server-restarts');
const keep = argv.includes('--keep');
/** A session that takes longer is released (interrupted) and counted as failed. */
const SESSION_TIMEOUT_MS = 5 * 60_000;
/** Worker kills: one every 8–20 s; a killed worker is started again after 0–3 s. Server restarts: every 45–90 s, down 0.5–2 s. */
const KILL_EVERY_S = [8, 20];
const RESTART_EVERY_S = [45, 90];

// ---------------------------------------------------------------- folders
const t0 = performance.now();
const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
const stateDir = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup');
const soakDir = path.join(stateDir, 'soak');
const work = path.join(soakDir, `work-${stamp}`);
const jsonPath = path.resolve(value('--json-out') ?? path.join(soakDir, `soak-${stamp}.json`));
const dataRoot = path.join(work, 'device');
const dbFile = path.join(work, 'temporal.db');
mkdirSync(work, { recursive: true, mode: 0o700 });
const log = (line) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(7)} s] ${line}\n`);

let stopping = false;
process.on('exit', () => {
  killAllSync();
  if (!keep) rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const rand = prng(SEED);
const between = ([lo, hi]) => lo + rand() * (hi - lo);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pickSome = (list) => {
  const some = list.filter(() => rand() < 0.6);
  return some.length ? some : [list[Math.floor(rand() * list.length)]];
};

// ---------------------------------------------------------------- figures
const figures = {
  sessionsStarted: 0,
  sessionsCompleted: 0,
  sessionsFailed: 0,
  byType: {},
  filesVerified: 0,
  filesLost: 0,
  metadataMismatches: 0,
  duplicateCallbacks: 0,
  serviceNotices: 0,
  workerKills: 0,
  workerStarts: 0,
  serverRestarts: 0,
};
const failures = [];
/** Files lost, and restore metadata mismatches (marked so). */
const lostDetails = [];
const duplicateDetails = [];
const countType = (type, key) => {
  figures.byType[type] ??= { started: 0, completed: 0, failed: 0 };
  figures.byType[type][key]++;
};

// ---------------------------------------------------------------- the service and the workers
let server;
let port = 0;
let serverUp = Promise.resolve();
async function startServer() {
  server = await startDevServer({ headless: true, port, dbFile });
  track(server.process);
  port = Number(server.address.split(':')[1]);
}
const address = () => `127.0.0.1:${port}`;
const taskQueue = `ohbackup-soak-${process.pid}`;

/** Worker slots: each is kept running (started again whenever it exits) until the end. */
const workers = Array.from({ length: WORKERS }, () => ({ proc: undefined, up: false }));
const anyWorkerUp = async () => {
  while (!workers.some((w) => w.up)) await sleep(200);
};
async function superviseWorker(i) {
  const slot = workers[i];
  while (!stopping) {
    try {
      await serverUp;
      slot.proc = await startWorkerProcess({
        label: `worker ${i}`,
        address: address(),
        dataRoot,
        stateDir: path.join(work, `worker-state-${i}`),
        taskQueue,
        logFile: path.join(work, `worker-${i}.log`),
      });
      figures.workerStarts++;
      if (stopping) {
        await slot.proc.stop();
        break;
      }
      slot.up = true;
      await new Promise((r) => slot.proc.child.once('exit', r));
    } catch (err) {
      log(`worker ${i} did not start: ${String(err.message).split('\n')[0]}`);
    }
    slot.up = false;
    if (!stopping) await sleep(between([0, 3]) * 1000);
  }
}

async function killWorkers(deadline) {
  while (Date.now() + KILL_EVERY_S[0] * 1000 < deadline) {
    await sleep(between(KILL_EVERY_S) * 1000);
    if (Date.now() >= deadline) return;
    const live = workers.filter((w) => w.up && w.proc);
    if (!live.length) continue;
    const victim = live[Math.floor(rand() * live.length)];
    victim.up = false;
    victim.proc.child.kill('SIGKILL');
    figures.workerKills++;
  }
}

async function restartServer(deadline) {
  while (Date.now() + RESTART_EVERY_S[0] * 1000 < deadline) {
    await sleep(between(RESTART_EVERY_S) * 1000);
    if (Date.now() >= deadline) return;
    let up;
    serverUp = new Promise((r) => (up = r));
    await server.stop('SIGKILL');
    await sleep(between([0.5, 2]) * 1000);
    for (;;) {
      try {
        await startServer();
        break;
      } catch (err) {
        log(`dev server did not come back: ${String(err.message).split('\n')[0]}; trying again`);
        await sleep(1000);
      }
    }
    figures.serverRestarts++;
    log(`dev server restarted (${figures.serverRestarts})`);
    up();
  }
}

// ---------------------------------------------------------------- sessions
/** Counts a command's progress events per bundle (and per session, for a restore chain). */
function tally() {
  const per = new Map();
  let session = '';
  const of = (name) => {
    const key = `${session} ${name}`;
    if (!per.has(key)) per.set(key, { name, begin: 0, end: 0, files: 0, total: undefined });
    return per.get(key);
  };
  return {
    per,
    onProgress(e) {
      if (e.type === 'start') session = e.sessionId;
      else if (e.type === 'begin') {
        of(e.bundleName).begin++;
        of(e.bundleName).total = e.total;
      } else if (e.type === 'file') {
        of(e.bundleName).files++;
        if (e.total !== undefined) of(e.bundleName).total = e.total;
      } else if (e.type === 'end') of(e.outcome.bundleName).end++;
      else if (e.type === 'notice' && /unreachable/.test(e.message)) figures.serviceNotices++;
    },
  };
}

function duplicates(t, what, expectedFiles) {
  let n = 0;
  for (const c of t.per.values()) {
    const extra = Math.max(0, c.begin - 1) + Math.max(0, c.end - 1) + Math.max(0, c.files - (expectedFiles?.(c.name) ?? c.total ?? Infinity));
    if (extra) duplicateDetails.push(`${what} ${c.name}: begin ${c.begin}, end ${c.end}, files ${c.files}`);
    n += extra;
  }
  return n;
}

/** Runs `fn(signal)` with the session time limit; returns its result or the error. */
async function limited(fn) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), SESSION_TIMEOUT_MS);
  try {
    return { result: await fn(abort.signal) };
  } catch (err) {
    return { error: err };
  } finally {
    clearTimeout(timer);
  }
}

function why(result, error) {
  if (error) return String(error.message ?? error).split('\n')[0];
  if (result.interrupted) return 'timed out (released)';
  if (result.error) return `${result.error.code} ${result.error.message}`;
  return result.bundles
    .filter((b) => b.state !== 'done')
    .map((b) => `${b.bundleName}: ${b.state}${b.error ? ` ${b.error.code} ${b.error.message}` : ''}`)
    .join('; ');
}

async function backupSession(lane, type) {
  const n = lane.count++;
  const out = path.join(work, 'sets', `l${lane.id}-${String(n).padStart(4, '0')}-${type}`);
  const names = pickSome(lane.bundles);
  const base = type === 'increment' ? lane.sets.filter((s) => s.incremental).at(-1) : undefined;
  if (type === 'increment' || rand() < 0.5) {
    for (const name of names) await mutateBundle(dataRoot, name, rand, ++lane.edits * 100 + lane.id);
  }
  const t = tally();
  const { result, error } = await limited((signal) =>
    runBackup({ out, bundles: names, incremental: type !== 'backup', ...(base ? { base: base.dir } : {}), onProgress: t.onProgress, signal }),
  );
  const set = { dir: out, incremental: type !== 'backup', snaps: new Map() };
  let problems = 0;
  for (const b of result?.bundles ?? []) {
    if (b.state !== 'done') continue;
    const snap = await snapshotBundle(dataRoot, b.bundleName);
    const index = await readManageIndex(path.join(out, b.bundleName, 'manage.json')).catch(() => undefined);
    const found = !index
      ? ['manage.json: missing']
      : index.incremental
        ? await checkIncrement(out, b.bundleName, snap)
        : await compareBundleSet(out, dataRoot, b.bundleName).catch((err) => [err.message]);
    if (found.length) {
      problems += found.length;
      figures.filesLost += found.length;
      lostDetails.push(...found.slice(0, 5).map((p) => `${path.basename(out)}/${b.bundleName}: ${p}`));
      continue;
    }
    figures.filesVerified += filesIn(snap);
    set.snaps.set(b.bundleName, snap);
  }
  // A bundle's onFileReady calls: one per file of its index, and the index itself.
  const expectedFiles = new Map();
  for (const name of names) {
    const index = await readManageIndex(path.join(out, name, 'manage.json')).catch(() => undefined);
    if (index) expectedFiles.set(name, index.files.length + 1);
  }
  figures.duplicateCallbacks += duplicates(t, path.basename(out), (name) => expectedFiles.get(name) ?? Infinity);
  if (set.snaps.size) lane.sets.push(set);
  const ok = !error && result.outcome === 'done' && problems === 0;
  return {
    ok,
    what: `${type} of ${names.length} bundle(s)${base ? ` on ${path.basename(base.dir)}` : ''}`,
    sessionId: result?.sessionId,
    reason: ok ? undefined : why(result, error),
  };
}

async function restoreSession(lane) {
  const from = lane.sets[Math.floor(rand() * lane.sets.length)];
  const names = pickSome([...from.snaps.keys()]);
  const map = Object.fromEntries(names.map((n) => [n, `${n}.r`]));
  const t = tally();
  const { result, error } = await limited((signal) => runRestore(planRestore({ from: from.dir, bundles: names, map }), { onProgress: t.onProgress, signal }));
  let problems = 0;
  for (const b of result?.bundles ?? []) {
    if (b.state !== 'done') continue;
    const got = await snapshotDir(bundlePaths(dataRoot, map[b.bundleName]).data).catch(() => new Map());
    const want = from.snaps.get(b.bundleName);
    const c = compareSnapshots(want, got);
    figures.metadataMismatches += c.metadata.length;
    if (c.metadata.length) lostDetails.push(...c.metadata.slice(0, 5).map((p) => `restore ${path.basename(from.dir)}/${b.bundleName} (metadata): ${p}`));
    if (c.lost.length) {
      problems += c.lost.length;
      figures.filesLost += c.lost.length;
      lostDetails.push(...c.lost.slice(0, 5).map((p) => `restore ${path.basename(from.dir)}/${b.bundleName}: ${p}`));
    } else figures.filesVerified += filesIn(want);
  }
  figures.duplicateCallbacks += duplicates(t, `restore of ${path.basename(from.dir)}`);
  const ok = !error && result.outcome === 'done' && problems === 0;
  return {
    ok,
    what: `restore of ${names.length} bundle(s) from ${path.basename(from.dir)}`,
    sessionId: result?.sessionId,
    reason: ok ? undefined : why(result, error),
  };
}

async function runLane(lane, deadline) {
  while (Date.now() < deadline) {
    await serverUp;
    await anyWorkerUp();
    const canIncrement = lane.sets.some((s) => s.incremental);
    const r = rand();
    const type = !lane.sets.length
      ? 'full-incremental'
      : r < 0.25
        ? 'backup'
        : r < 0.4
          ? 'full-incremental'
          : r < 0.7 && canIncrement
            ? 'increment'
            : 'restore';
    figures.sessionsStarted++;
    countType(type, 'started');
    const started = performance.now();
    let outcome;
    try {
      outcome = type === 'restore' ? await restoreSession(lane) : await backupSession(lane, type);
    } catch (err) {
      outcome = { ok: false, what: type, reason: `the soak's own step failed: ${err?.stack ?? err}` };
    }
    const took = secs(performance.now() - started);
    if (outcome.ok) {
      figures.sessionsCompleted++;
      countType(type, 'completed');
      log(`lane ${lane.id}: ${outcome.what}: done in ${took}`);
    } else {
      figures.sessionsFailed++;
      countType(type, 'failed');
      failures.push({ lane: lane.id, type, sessionId: outcome.sessionId, reason: outcome.reason });
      log(`lane ${lane.id}: ${outcome.what}: FAILED in ${took}: ${outcome.reason}`);
    }
  }
}

// ---------------------------------------------------------------- run
let exitCode = 0;
try {
  const templateDir = path.join(work, 'template');
  const kinds = await writeTemplate(templateDir, { scale: SCALE, seed: SEED });
  const lanes = [];
  for (let l = 0; l < LANES; l++) {
    const bundles = [];
    for (const k of kinds) {
      const name = `com.soak.l${l}.${k.name.split('.').pop()}`;
      await copyBundle(templateDir, k.name, dataRoot, name);
      bundles.push(name);
    }
    lanes.push({ id: l, bundles, sets: [], count: 0, edits: 0 });
  }
  await startServer();
  backup.configure({ address: address(), taskQueue });
  log(
    `Soak for ${MINUTES} min, seed ${SEED}: ${LANES} lanes × ${kinds.length} bundles, ${WORKERS} worker processes, dev server ${address()} (database ${dbFile})`,
  );
  const supervisors = workers.map((_, i) => superviseWorker(i));
  await anyWorkerUp();
  const deadline = Date.now() + MINUTES * 60_000;
  const faults = [KILLS ? killWorkers(deadline) : undefined, SERVER_RESTARTS ? restartServer(deadline) : undefined];
  await Promise.all(lanes.map((lane) => runLane(lane, deadline)));
  await Promise.all(faults);
  stopping = true;
  await Promise.all(workers.map((w) => w.proc?.stop()));
  await Promise.all(supervisors);
} catch (err) {
  log(`soak FAILED: ${err?.stack ?? err}`);
  exitCode = 1;
} finally {
  stopping = true;
  await backup.closeConnection().catch(() => undefined);
  await server?.stop().catch(() => undefined);
}

if (figures.filesLost || figures.duplicateCallbacks || !figures.sessionsCompleted) exitCode = 1;
const report = {
  startedAt: startedAt.toISOString(),
  minutes: MINUTES,
  host: { cpus: os.cpus().length, loadAverageAtEnd: os.loadavg(), node: process.version },
  options: { lanes: LANES, workers: WORKERS, scale: SCALE, seed: SEED, kills: KILLS, serverRestarts: SERVER_RESTARTS },
  figures,
  failures,
  lostDetails: lostDetails.slice(0, 50),
  duplicateDetails: duplicateDetails.slice(0, 50),
  ok: exitCode === 0,
};
mkdirSync(path.dirname(jsonPath), { recursive: true });
writeFileSync(jsonPath, JSON.stringify(report, null, 2) + '\n');
console.log(
  formatTable(
    ['figure', 'value'],
    [
      ['sessions started', String(figures.sessionsStarted)],
      ['sessions completed', String(figures.sessionsCompleted)],
      ['sessions failed', String(figures.sessionsFailed)],
      ...Object.entries(figures.byType).map(([type, c]) => [`  ${type}`, `${c.completed}/${c.started} completed`]),
      ['files verified', String(figures.filesVerified)],
      ['files lost (must be 0)', String(figures.filesLost)],
      ['duplicate callbacks (must be 0)', String(figures.duplicateCallbacks)],
      ['restore metadata mismatches', String(figures.metadataMismatches)],
      ['worker kills (SIGKILL)', String(figures.workerKills)],
      ['dev server restarts', String(figures.serverRestarts)],
      ['"service unreachable" notices', String(figures.serviceNotices)],
    ],
    [1],
  ),
);
for (const f of failures.slice(0, 20)) console.log(`  failed: lane ${f.lane} ${f.type} ${f.sessionId ?? ''}: ${f.reason}`);
for (const l of lostDetails.slice(0, 20)) console.log(`  lost: ${l}`);
for (const d of duplicateDetails.slice(0, 20)) console.log(`  duplicate: ${d}`);
console.log(`\nJSON: ${jsonPath}`);
process.exit(exitCode);
