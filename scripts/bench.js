// `npm run bench [-- --quick] [-- --rounds N] [-- --scale] [-- --million] [-- --keep] [-- --seed N] [-- --cpu-prof]`
//
// One run on a warm service: a headless Temporal dev server with a temporary
// database, one backup worker in its own process (its RSS measured through
// /proc) and a second worker process serving an empty data root for restores.
// A seeded data set is backed up and restored by ohbackup (the session, the
// command as a user runs it, into a restic repository), tar and restic,
// interleaved over N rounds; then 1% of the small files change and ohbackup's
// increments are timed against restic's second backup. Medians are compared
// with issue 16's targets, every figure beside its anchor. Then the hand-over
// rate, the Temporal history events of a backup of 50 small bundles, one
// session of 1 000 empty bundles, and with --scale / --million the scale
// figures. One table on stdout, the same as JSON in
// <OHBACKUP_STATE_DIR or .ohbackup>/bench/bench-<time>.json.
// Everything the bench starts is stopped, even on failure; the data set is
// removed at the end unless --keep.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backup } from '../dist/client/index.js';
import { restoreFromSet } from '../dist/client/runs/restoreSession.js';
import { compareBundleSet, compareRestoredBundle } from '../dist/client/sets/verify.js';
import { startDevServer } from '../dist/workers/devServer.js';
import { changeOnePercent, datasetShape, writeDataset, writeEmptyBundles, writeRateBundles, writeSmallBundles } from '../bench/dataset.js';
import { incrementalRun, incrementalSession } from '../bench/increment.js';
import { cliBackup, fullBackup, handOverRate, manyBundles, restore } from '../bench/ohbackup.js';
import { freshRepository, repositoryBackup, repositoryFigures } from '../bench/repository.js';
import { millionFiles, scaleCurve, SCALE_FACTORS, writeScaleSets } from '../bench/scale.js';
import { describeCost, quiesce, temporalCost } from '../bench/temporalCost.js';
import { findAnchors } from '../bench/tools.js';
import { killAllSync, output, procStatus, settle, startWorkerProcess, timed, track, watchRss } from '../bench/procs.js';
import { failedRow, formatRows, info, median, mib, perSec, row, secs, skipped } from '../bench/report.js';
import { runBackup } from '../dist/client/runs/runBackup.js';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(`Usage: npm run bench [-- --quick] [-- --rounds N] [-- --scale] [-- --million] [-- --keep] [-- --seed N] [-- --cpu-prof]
  --quick      a tenth of the data set (8 bundles × 200 files + two 2.4 MiB files), 200 empty bundles, shorter rate runs (a few minutes)
  --rounds N   timed rounds, interleaved (default 3, at least 3)
  --scale      also the backup time of 0.1×, 1× and 3× the data set, as a curve with the ratio to linear (adds ~2 minutes; ~1 with --quick)
  --million    also one bundle of 1 000 000 tiny files backed up and restored: workers' peak RSS, longest history
               (long: about an hour on 2 cores — writing the files ~2 minutes, backup and restore ~5–10,
               the untimed byte-for-byte verification of both the rest; with --quick 100 000 files, ~5 minutes)
  --keep       keep the data set and work folder
  --seed N     data set seed (default 20240601)
  --cpu-prof   run the backup worker under node --cpu-prof (profile next to the JSON)
The default run (no --scale, no --million) takes ~10–20 minutes.`);
  process.exit(0);
}
const flagValue = (name, fallback) => {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) {
    console.error(`${name} expects a whole number`);
    process.exit(2);
  }
  return v;
};
const quick = argv.includes('--quick');
const keep = argv.includes('--keep');
const cpuProf = argv.includes('--cpu-prof');
const withScale = argv.includes('--scale');
const withMillion = argv.includes('--million');
const rounds = Math.max(3, flagValue('--rounds', 3));
const seed = flagValue('--seed', 20240601);
/** The session path's rate (runBackup); the command line runs at its own default. */
const SEND_RATE = 800;
const RATES = [1, 60, 300, 800];
const RATE_SECONDS = quick ? 2 : 5;
/** The target is 1 000 in ≤ 30 s; --quick runs 200 against the same pace (≤ 6 s). */
const EMPTY_BUNDLES = quick ? 200 : 1000;
const EMPTY_TARGET_MS = (30_000 * EMPTY_BUNDLES) / 1000;
const SMALL_BUNDLES = 50;
const SMALL_FILES = 20;
const MILLION = quick ? 100_000 : 1_000_000;
const STEP_TIMEOUT_MS = (quick ? 10 : 30) * 60_000;
const MILLION_TIMEOUT_MS = 120 * 60_000;

// ---------------------------------------------------------------- folders
const benchStarted = performance.now();
const startedAt = new Date();
const loadAtStart = os.loadavg();
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
const stateDir = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup');
const benchDir = path.join(stateDir, 'bench');
const work = path.join(benchDir, `work-${stamp}`);
const jsonPath = path.join(benchDir, `bench-${stamp}.json`);
const profDir = path.join(benchDir, `prof-${stamp}`);
const dataRoot = path.join(work, 'device');
const restoreRoot = path.join(work, 'restore-root');
mkdirSync(work, { recursive: true, mode: 0o700 });

const log = (line) => process.stderr.write(`[${((performance.now() - benchStarted) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
/**
 * Until the rounds end nothing is deleted, only moved into the trash (removed after them): ext4 does not
 * reuse an inode freed in the last 60 s (300 s while its inode table block is dirty) and scans past each one,
 * so every file created soon after a tree was removed cost up to a millisecond more (docs/development/benchmarks.md).
 */
const trash = path.join(work, 'trash');
let trashed = 0;
const discard = (p) => {
  mkdirSync(trash, { recursive: true, mode: 0o700 });
  try {
    renameSync(p, path.join(trash, String(trashed++)));
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
};
const emptyDir = (dir) => {
  discard(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
};

// Whatever happens, nothing the bench started outlives it.
let workRemoved = false;
const removeWork = () => {
  if (keep || workRemoved) return;
  workRemoved = true;
  rmSync(work, { recursive: true, force: true });
};
process.on('exit', () => {
  killAllSync();
  removeWork();
});
let server;
const workers = {};
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    // A second signal does not wait.
    if (stopping) process.exit(130);
    stopping = true;
    log(`\n${sig}: stopping the workers and the dev server${keep ? '' : ', removing the work folder'} ...`);
    // Gracefully first (SIGTERM, SIGKILL after 15 s): a worker under --cpu-prof writes its profile only as it exits.
    Promise.all(Object.values(workers).map((w) => w?.stop()))
      .then(() => server?.stop())
      .catch(() => undefined)
      .finally(() => process.exit(130));
  });
}
const results = { rounds: [], handOver: [], manyBundles: undefined, workerRss: {}, verified: {}, settled: [] };
const notes = [];
let failed;
/** Steps after the rounds (increment, hand-over rates, many bundles, …) fail alone: recorded, shown as FAIL, the rest still runs. */
const stepErrors = [];
const stepFailed = (what, err) => {
  const message = String(err?.message ?? err).split('\n')[0];
  stepErrors.push({ step: what, message });
  log(`${what} FAILED: ${err?.message ?? err}`);
  return message;
};
/** Runs a step that may fail alone: its result, or { error }. */
const step = async (what, fn) => {
  try {
    return await fn();
  } catch (err) {
    return { error: stepFailed(what, err) };
  }
};

try {
  log(
    `ohbackup bench: ${quick ? 'quick' : 'full'} data set, ${rounds} rounds, seed ${seed}${withScale ? ', --scale' : ''}${withMillion ? `, --million (${MILLION} files)` : ''}; work folder ${work}`,
  );

  // ------------------------------------------------------------ tools
  const tools = await findAnchors({ log });
  const { tar, restic } = tools;
  log(`Anchors: ${tools.tarVersion}; ${tools.resticVersion ? `${tools.resticVersion} (${restic})` : 'no restic'}; ${tools.temporalVersion}`);
  const resticEnv = { ...process.env, RESTIC_PASSWORD: 'ohbackup-bench', RESTIC_CACHE_DIR: path.join(work, 'restic-cache'), RESTIC_PROGRESS_FPS: '0.1' };

  // ------------------------------------------------------------ data set
  let t = performance.now();
  const shape = datasetShape(quick);
  const dataset = writeDataset(dataRoot, shape, seed);
  const rateCounts = Object.fromEntries(RATES.map((r) => [r, Math.max(quick ? 3 : 6, r * RATE_SECONDS)]));
  const rateBundles = writeRateBundles(dataRoot, rateCounts);
  const empties = writeEmptyBundles(dataRoot, EMPTY_BUNDLES);
  const smalls = writeSmallBundles(dataRoot, SMALL_BUNDLES, SMALL_FILES, seed + 7000);
  const names = dataset.bundles.map((b) => b.name);
  const dataDirs = names.map((n) => `${n}/data`);
  log(
    `Data set: ${names.length} bundles, ${dataset.files} files, ${mib(dataset.bytes)} in ${secs(performance.now() - t)}; ` +
      `rate bundles ${RATES.map((r) => `${r}/s: ${rateCounts[r]} × 2.1 MiB (sparse)`).join(', ')}; ${EMPTY_BUNDLES} empty bundles; ${SMALL_BUNDLES} bundles of ${SMALL_FILES} small files`,
  );

  // ------------------------------------------------------------ service, workers
  t = performance.now();
  server = await startDevServer({ headless: true, port: 0, dbFile: path.join(work, 'temporal.db') });
  track(server.process);
  process.env.TEMPORAL_ADDRESS = server.address;
  const backupQueue = `ohbackup-bench-${process.pid}`;
  const restoreQueue = `ohbackup-bench-restore-${process.pid}`;
  process.env.OHBACKUP_TASK_QUEUE = backupQueue;
  // The command as a user runs it: the same server and device queue, its own state folder.
  const cliEnv = { ...process.env, OHBACKUP_STATE_DIR: path.join(work, 'cli-state'), MALLOC_ARENA_MAX: '2' };
  if (cpuProf) mkdirSync(profDir, { recursive: true });
  [workers.backup, workers.restore] = await Promise.all([
    startWorkerProcess({
      label: 'backup',
      address: server.address,
      dataRoot,
      stateDir: path.join(work, 'worker-state'),
      taskQueue: backupQueue,
      logFile: path.join(work, 'worker-backup.log'),
      nodeArgs: cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    }),
    (mkdirSync(restoreRoot, { recursive: true, mode: 0o700 }),
    startWorkerProcess({
      label: 'restore',
      address: server.address,
      dataRoot: restoreRoot,
      stateDir: path.join(work, 'restore-state'),
      taskQueue: restoreQueue,
      logFile: path.join(work, 'worker-restore.log'),
    })),
  ]);
  log(
    `Dev server ${server.address} (headless, temp db); backup worker pid ${workers.backup.pid}, restore worker pid ${workers.restore.pid}; up in ${secs(performance.now() - t)}`,
  );

  // ------------------------------------------------------------ warm-up (untimed)
  t = performance.now();
  const warmSet = path.join(work, 'warmup-set');
  await runBackup({ out: warmSet, bundles: [empties[0], names[0]] });
  await restoreFromSet({ from: warmSet, bundles: [empties[0], names[0]], session: { taskQueue: restoreQueue } });
  discard(warmSet);
  await cliBackup({ out: warmSet, bundles: [empties[0]], env: cliEnv, timeoutMs: STEP_TIMEOUT_MS });
  discard(warmSet);
  emptyDir(restoreRoot);
  log(`Warm-up (one backup, one restore, one \`ohbackup backup\`; untimed) ${secs(performance.now() - t)}`);

  // ------------------------------------------------------------ incremental base (untimed)
  const haveIncrement = Boolean(incrementalSession());
  let incBase;
  let incrementError;
  if (haveIncrement) {
    const out = path.join(work, 'inc-base-set');
    try {
      const b = await incrementalRun({ bundles: names, out, manifestDir: path.join(work, 'manifests-base'), rate: SEND_RATE, timeoutMs: STEP_TIMEOUT_MS });
      incBase = b.manifests;
      results.incrementBase = { ms: b.ms, files: b.files, bytes: b.bytes };
      log(`Incremental base (IncrementalBackupSession, lastIncrementalTime 0; untimed for the targets) ${secs(b.ms)}: ${b.files} files, ${mib(b.bytes)}`);
    } catch (err) {
      incrementError = stepFailed('incremental base', err);
    }
    discard(out);
  }

  // ------------------------------------------------------------ rounds
  const rotate = (list, k) => list.map((_, i) => list[(i + k) % list.length]);
  /**
   * Runs `steps` (name → async () => ms, or { ms, also }) in the round's rotated order, logging each.
   * Each starts settled (an untimed `sync`): no step pays for the writeback an earlier one left behind.
   */
  const interleaved = async (r, steps) => {
    for (const name of rotate(Object.keys(steps), r)) {
      results.settled.push({ round: r + 1, before: name, ms: await settle() });
      const x = await steps[name]();
      const ms = typeof x === 'object' ? x.ms : x;
      if (ms !== undefined) log(`round ${r + 1}/${rounds}  ${name.padEnd(30)} ${secs(ms)}${x?.also ? `  (${x.also})` : ''}`);
    }
  };
  let repositoryError;
  for (let r = 0; r < rounds; r++) {
    const res = { round: r + 1 };
    const set = path.join(work, `set-${r}`);
    const cliSet = path.join(work, `cli-set-${r}`);
    const tarFile = path.join(work, `tar-${r}.tar`);
    const tarOut = path.join(work, `tar-x-${r}`);
    const repo = path.join(work, `restic-${r}`);
    const resticOut = path.join(work, `restic-x-${r}`);
    const ohRepoName = `ohbackup-repo-${r}`;
    let full;
    let ohRepo;
    if (restic && !repositoryError) {
      try {
        ohRepo = await freshRepository({ work, restic, name: ohRepoName });
      } catch (err) {
        repositoryError = stepFailed('repository init', err);
      }
    }

    await interleaved(r, {
      'ohbackup backup (session)': async () => {
        const rss = watchRss(workers.backup.pid);
        try {
          full = await fullBackup({ out: set, bundles: names, rate: SEND_RATE, timeoutMs: STEP_TIMEOUT_MS });
        } finally {
          res.workerRss = rss.stop();
        }
        res.ohbackupBackupMs = full.ms;
        res.ohbackupBackupCallMs = full.callMs;
        res.ohbackupFiles = full.files;
        res.ohbackupBytes = full.bytes;
        return full.ms;
      },
      'ohbackup backup --out (command)': async () =>
        (res.cliBackupMs = (await cliBackup({ out: cliSet, bundles: names, env: cliEnv, timeoutMs: STEP_TIMEOUT_MS })).ms),
      // Its durable anchor: the archive then `sync -f` on it (ohbackup's set is flushed before it counts as complete), timed together.
      'tar -cf': async () => {
        const t0 = performance.now();
        res.tarCreateMs = await timed(tar, ['-cf', tarFile, '-C', dataRoot, ...dataDirs]);
        await timed('sync', ['-f', tarFile]);
        res.tarCreateDurableMs = performance.now() - t0;
        return { ms: res.tarCreateMs, also: `with sync -f: ${secs(res.tarCreateDurableMs)}` };
      },
      ...(restic && {
        'restic backup': async () => {
          await output(restic, ['-r', repo, 'init'], { env: resticEnv });
          return (res.resticBackupMs = await timed(restic, ['-r', repo, 'backup', '--quiet', ...dataDirs.map((d) => path.join(dataRoot, d))], {
            env: resticEnv,
          }));
        },
      }),
      ...(ohRepo && {
        'ohbackup backup --repo': async () => {
          try {
            res.repoFirst = await repositoryBackup({ repository: ohRepo, bundles: names, rate: SEND_RATE, timeoutMs: STEP_TIMEOUT_MS, work });
            return (res.repoBackupMs = res.repoFirst.ms);
          } catch (err) {
            repositoryError = stepFailed(`round ${r + 1} backup into a repository`, err);
            return undefined;
          }
        },
      }),
    });

    await interleaved(r, {
      'ohbackup restore': async () => {
        const x = await restore({ from: set, bundles: names, taskQueue: restoreQueue, timeoutMs: STEP_TIMEOUT_MS });
        return (res.ohbackupRestoreMs = x.ms);
      },
      // The durable anchors: the same extraction then `sync -f` on its target (what ohbackup's restore ends with), timed together.
      'tar -xf': async () => {
        emptyDir(tarOut);
        const t0 = performance.now();
        res.tarExtractMs = await timed(tar, ['-xf', tarFile, '-C', tarOut]);
        await timed('sync', ['-f', tarOut]);
        res.tarExtractDurableMs = performance.now() - t0;
        return { ms: res.tarExtractMs, also: `with sync -f: ${secs(res.tarExtractDurableMs)}` };
      },
      ...(restic && {
        'restic restore': async () => {
          emptyDir(resticOut);
          const t0 = performance.now();
          res.resticRestoreMs = await timed(restic, ['-r', repo, 'restore', 'latest', '--target', resticOut, '--quiet'], { env: resticEnv });
          await timed('sync', ['-f', resticOut]);
          res.resticRestoreDurableMs = performance.now() - t0;
          return { ms: res.resticRestoreMs, also: `with sync -f: ${secs(res.resticRestoreDurableMs)}` };
        },
      }),
    });

    if (r === 0) {
      // Once, untimed: both sets match the device and the restore gives it back.
      t = performance.now();
      const problems = [];
      for (const n of names) {
        for (const p of await compareBundleSet(set, dataRoot, n)) problems.push(`set ${n}: ${p}`);
        for (const p of await compareBundleSet(cliSet, dataRoot, n)) problems.push(`command's set ${n}: ${p}`);
        for (const p of await compareRestoredBundle(dataRoot, restoreRoot, n)) problems.push(`restored ${n}: ${p}`);
      }
      if (problems.length) throw new Error(`round 1 did not verify (${problems.length} problems):\n  ${problems.slice(0, 10).join('\n  ')}`);
      results.verified = { backupSet: true, commandSet: true, restore: true, files: full.files, bytes: full.bytes };
      log(`round 1 verified: both sets and the restored data root match the device (${secs(performance.now() - t)}, untimed)`);
    }

    // The second backups: 1% of the small files changed since every first backup of this round (and since the increment's base).
    const changed = changeOnePercent(dataset, seed + 1000 + r);
    Object.assign(res, { changedFiles: changed.files, changedBytes: changed.bytes });
    await interleaved(r, {
      ...(haveIncrement &&
        !incrementError && {
          'ohbackup increment': async () => {
            const out = path.join(work, `inc-set-${r}`);
            try {
              const inc = await incrementalRun({
                bundles: names,
                base: incBase,
                out,
                manifestDir: path.join(work, `manifests-${r}`),
                rate: SEND_RATE,
                timeoutMs: STEP_TIMEOUT_MS,
              });
              incBase = inc.manifests;
              Object.assign(res, { incrementMs: inc.ms, incrementFiles: inc.files, incrementBytes: inc.bytes });
              return inc.ms;
            } catch (err) {
              incrementError = stepFailed(`round ${r + 1} increment`, err);
              return undefined;
            } finally {
              discard(out);
            }
          },
        }),
      ...(restic && {
        'restic second backup': async () =>
          // Same paths and host: restic takes the round's first snapshot as the parent and reads only changed files.
          (res.resticSecondMs = await timed(restic, ['-r', repo, 'backup', '--quiet', ...dataDirs.map((d) => path.join(dataRoot, d))], { env: resticEnv })),
      }),
      ...(ohRepo &&
        !repositoryError && {
          'ohbackup backup --repo --base latest': async () => {
            try {
              res.repoSecond = await repositoryBackup({ repository: ohRepo, bundles: names, rate: SEND_RATE, timeoutMs: STEP_TIMEOUT_MS, work, second: true });
              return (res.repoSecondMs = res.repoSecond.ms);
            } catch (err) {
              repositoryError = stepFailed(`round ${r + 1} increment into a repository`, err);
              return undefined;
            }
          },
        }),
    });
    log(`round ${r + 1}/${rounds}  (${changed.files} files changed before the second backups)`);

    results.rounds.push(res);
    for (const p of [set, cliSet, tarFile, tarOut, repo, resticOut, path.join(work, ohRepoName)]) discard(p);
    emptyDir(restoreRoot);
  }
  t = performance.now();
  rmSync(trash, { recursive: true, force: true });
  log(`The rounds' outputs removed (untimed) in ${secs(performance.now() - t)}`);

  // ------------------------------------------------------------ hand-over rate
  for (const rate of RATES) {
    let h;
    try {
      h = await handOverRate({ bundle: rateBundles[rate].name, rate, timeoutMs: STEP_TIMEOUT_MS });
    } catch (err) {
      results.handOver.push({ rate, files: rateCounts[rate] + 1, error: stepFailed(`hand-over at ${rate}/s`, err) });
      continue;
    }
    results.handOver.push(h);
    log(
      `hand-over at ${rate}/s: ${perSec(h.slope)} (least squares over ${h.slopeSource}); the tool received ${h.files} files in ${h.spanS.toFixed(2)} s, least squares ${perSec(h.received.slope)}`,
    );
  }

  // ------------------------------------------------------------ Temporal cost: history events of a backup of many small bundles
  results.temporalCost = await step(`${SMALL_BUNDLES} small bundles`, async () => {
    const out = path.join(work, 'small-set');
    if (!(await quiesce())) log('some workflows still run before the small bundles: their events may be counted with them');
    const since = Date.now();
    const b = await fullBackup({ out, bundles: smalls, rate: SEND_RATE, timeoutMs: STEP_TIMEOUT_MS });
    const problems = [];
    for (const n of smalls) for (const p of await compareBundleSet(out, dataRoot, n)) problems.push(`${n}: ${p}`);
    if (problems.length) throw new Error(`the set of ${SMALL_BUNDLES} small bundles did not verify: ${problems.slice(0, 5).join('; ')}`);
    rmSync(out, { recursive: true, force: true });
    const cost = await temporalCost({ sessionId: b.sessionId, sinceMs: since, expectBundles: SMALL_BUNDLES });
    log(
      `${SMALL_BUNDLES} small bundles (runBackup, verified): ${secs(b.ms)}; ${cost.total} history events in ${cost.workflows} workflow runs = ${(cost.total / SMALL_BUNDLES).toFixed(1)} per bundle (${describeCost(cost)})${cost.settled ? '' : ' — not all closed in time'}`,
    );
    return { ms: b.ms, bundles: SMALL_BUNDLES, ...cost, perBundle: cost.total / SMALL_BUNDLES };
  });

  // ------------------------------------------------------------ orchestration overhead
  results.manyBundles = await step(`${EMPTY_BUNDLES} empty bundles`, async () => {
    await quiesce();
    const since = Date.now();
    const x = await manyBundles({ bundles: empties, timeoutMs: STEP_TIMEOUT_MS });
    log(`${EMPTY_BUNDLES} empty bundles in one session: ${secs(x.ms)}${x.serviceDied ? ` (onBackupServiceDied × ${x.serviceDied} meanwhile)` : ''}`);
    const cost = await temporalCost({ sessionId: x.sessionId, sinceMs: since, expectBundles: EMPTY_BUNDLES }).catch((err) => ({ error: err.message }));
    if (!cost.error)
      log(`  ${cost.total} history events in ${cost.workflows} workflow runs = ${(cost.total / EMPTY_BUNDLES).toFixed(1)} per bundle (${describeCost(cost)})`);
    return {
      ...x,
      cost: cost.error
        ? cost
        : { total: cost.total, workflows: cost.workflows, byKind: cost.byKind, longestHistory: cost.longestHistory, perBundle: cost.total / EMPTY_BUNDLES },
    };
  });

  // ------------------------------------------------------------ repository deduplication
  if (restic) {
    results.repository = await step('repository', async () => {
      const x = await repositoryFigures({ work, restic, bundles: names, rate: SEND_RATE, dataset, seed: seed + 5000, timeoutMs: STEP_TIMEOUT_MS });
      log(
        `repository: full backup ${secs(x.first.ms)} (${mib(x.first.dataAdded)} added); after 1% of the small files changed (${x.changedFiles} files), a second full one added ${mib(x.second.dataAdded)} = ${(x.addedRatio * 100).toFixed(2)}% (raw data +${(x.rawGrowth * 100).toFixed(2)}%)`,
      );
      return x;
    });
  }

  results.workerRss.peakSinceLastFullBackupStart = procStatus(workers.backup.pid, 'VmHWM');
  results.workerRss.restoreWorkerLifetimePeak = procStatus(workers.restore.pid, 'VmHWM');

  // ------------------------------------------------------------ scale
  if (withScale) {
    results.scale = await step('scale curve', async () => {
      t = performance.now();
      const sets = writeScaleSets(dataRoot, quick, seed + 9000);
      log(
        `Scale sets: ${SCALE_FACTORS.map((k) => `${k}×: ${sets[k].files} files, ${mib(sets[k].bytes)}`).join('; ')} written in ${secs(performance.now() - t)}`,
      );
      return scaleCurve({ sets, dataRoot, work, rounds, rate: SEND_RATE, timeoutMs: STEP_TIMEOUT_MS, log });
    });
  }
  if (withMillion) {
    results.million = await step('million files', () =>
      millionFiles({
        dataRoot,
        restoreRoot,
        work,
        files: MILLION,
        seed: seed + 11000,
        rate: SEND_RATE,
        workers,
        restoreQueue,
        timeoutMs: MILLION_TIMEOUT_MS,
        log,
      }),
    );
  }

  // ------------------------------------------------------------ report
  const med = (k) => median(results.rounds.map((x) => x[k]));
  const m = {
    ohbackupBackup: med('ohbackupBackupMs'),
    ohbackupBackupCall: med('ohbackupBackupCallMs'),
    cliBackup: med('cliBackupMs'),
    tarCreate: med('tarCreateMs'),
    tarCreateDurable: med('tarCreateDurableMs'),
    resticBackup: restic ? med('resticBackupMs') : undefined,
    ohbackupRestore: med('ohbackupRestoreMs'),
    tarExtract: med('tarExtractMs'),
    tarExtractDurable: med('tarExtractDurableMs'),
    resticRestore: restic ? med('resticRestoreMs') : undefined,
    resticRestoreDurable: restic ? med('resticRestoreDurableMs') : undefined,
    increment: haveIncrement ? med('incrementMs') : undefined,
    resticSecond: restic ? med('resticSecondMs') : undefined,
    repoBackup: restic ? med('repoBackupMs') : undefined,
    repoSecond: restic ? med('repoSecondMs') : undefined,
    workerPeakRss: Math.max(...results.rounds.map((x) => x.workerRss?.peak ?? 0)),
    workerIdleRss: median(results.rounds.map((x) => x.workerRss?.atStart)),
  };
  const noRestic = `restic not found (${tools.resticWhy ?? 'OHBACKUP_RESTIC, PATH, or Go to build it'})`.split('\n')[0];
  /** A row against restic's figure, or skipped without restic; `fail` (a step's error) shows as FAIL. */
  const resticRow = (args, fail) =>
    fail
      ? failedRow({ measure: args.measure, error: fail, target: args.target })
      : restic
        ? row({ show: secs, ...args })
        : skipped({ measure: args.measure, why: noRestic, target: args.target });
  /** Context beside a target: the anchor made durable as ohbackup's set or restore is (then `sync -f`), and `value`'s ratio to it. */
  const durable = (anchorName, anchorMs, value = m.ohbackupRestore) =>
    Number.isFinite(anchorMs) && Number.isFinite(value) ? `durable: ${anchorName} + sync -f ${secs(anchorMs)} (${(value / anchorMs).toFixed(3)}×)` : undefined;
  const fullLabel = `full backup, session (runBackup, send rate ${SEND_RATE}/s)`;
  const cliLabel = 'full backup as a user runs it (`ohbackup backup --out`, default rate, whole process)';
  const restoreLabel = 'restore into an empty data root (worker already up)';
  const incLabel = 'increment after changing 1% of the small files (IncrementalBackupSession)';
  const scaleRows = () => {
    const target = '≤ 1.2 × linear (goal 1.0×)';
    if (!withScale) return [skipped({ measure: 'scale: backup of 0.1×, 1×, 3× the data set', why: 'run with --scale', target })];
    if (results.scale.error) return [failedRow({ measure: 'scale: backup of 0.1×, 1×, 3× the data set', error: results.scale.error, target })];
    const one = results.scale.find((x) => x.factor === 1).ms;
    return results.scale.map((x) =>
      row({
        measure: `scale: full backup of ${x.factor}× (${x.files} files, ${mib(x.bytes)})`,
        value: x.ms,
        show: secs,
        anchorName: `linear from 1×:`,
        anchor: x.factor * one,
        ...(x.factor > 1 ? { max: 1.2, target } : { target: x.factor === 1 ? 'the reference' : 'fixed costs show here' }),
      }),
    );
  };
  const millionRows = () => {
    const label = `${MILLION} tiny files in one bundle`;
    const targets = ['≤ 300 MiB', '≤ 300 MiB', '≤ 5 000 events'];
    if (!withMillion)
      return [
        skipped({
          measure: `${label}: backup and restore, worker peak RSS, longest history`,
          why: 'run with --million',
          target: 'RSS ≤ 300 MiB, bounded histories',
        }),
      ];
    const x = results.million;
    if (x.error) return [failedRow({ measure: `${label}: backup and restore`, error: x.error, target: 'RSS ≤ 300 MiB, bounded histories' })];
    return [
      info({ measure: `${label}: backup (runBackup, verified)`, value: x.backupMs, show: secs, note: `files written in ${secs(x.writeMs)}` }),
      info({ measure: `${label}: restore (verified)`, value: x.restoreMs, show: secs }),
      row({ measure: `${label}: backup worker peak RSS`, value: x.backupWorkerRss.peak, show: mib, max: 300 * 2 ** 20, target: targets[0] }),
      row({ measure: `${label}: restore worker peak RSS`, value: x.restoreWorkerRss.peak, show: mib, max: 300 * 2 ** 20, target: targets[1] }),
      row({
        measure: `${label}: longest history of the backup's ${x.workflows} workflow runs (${x.events} events in all)`,
        value: x.longestHistory,
        show: (v) => `${v} events`,
        max: 5000,
        target: targets[2],
      }),
    ];
  };
  const cost = results.temporalCost;
  const empty = results.manyBundles;
  const rows = [
    // 1. full backup
    row({
      measure: fullLabel,
      value: m.ohbackupBackup,
      show: secs,
      anchorName: 'tar -cf',
      anchor: m.tarCreate,
      max: 1.5,
      target: '≤ 1.5 × tar -cf',
      context: durable('tar -cf', m.tarCreateDurable, m.ohbackupBackup),
    }),
    row({
      measure: cliLabel,
      value: m.cliBackup,
      show: secs,
      anchorName: 'tar -cf',
      anchor: m.tarCreate,
      max: 2.5,
      target: '≤ 2.5 × tar -cf',
      context: durable('tar -cf', m.tarCreateDurable, m.cliBackup),
    }),
    resticRow({ measure: fullLabel, value: m.ohbackupBackup, anchorName: 'restic backup', anchor: m.resticBackup, target: 'for comparison' }),
    // 2. restore
    resticRow({
      measure: restoreLabel,
      value: m.ohbackupRestore,
      anchorName: 'restic restore',
      anchor: m.resticRestore,
      max: 0.8,
      target: '≤ 0.8 × restic restore',
      context: durable('restic restore', m.resticRestoreDurable),
    }),
    row({
      measure: restoreLabel,
      value: m.ohbackupRestore,
      show: secs,
      anchorName: 'tar -xf',
      anchor: m.tarExtract,
      max: 1.0,
      target: '≤ 1.0 × tar -xf',
      context: durable('tar -xf', m.tarExtractDurable),
    }),
    // 3. increment
    incrementError
      ? failedRow({ measure: incLabel, error: incrementError, target: "≤ 0.5 × restic's second backup" })
      : !haveIncrement
        ? row({ measure: incLabel, na: 'n/a (incremental backup not built yet)', anchorName: 'restic second backup', target: "≤ 0.5 × restic's second backup" })
        : resticRow({
            measure: incLabel,
            value: m.increment,
            anchorName: 'restic 2nd backup',
            anchor: m.resticSecond,
            max: 0.5,
            target: "≤ 0.5 × restic's second backup",
          }),
    // 4. repository
    resticRow(
      {
        measure: 'backup into a restic repository (`backup --repo --incremental`: session + store)',
        value: m.repoBackup,
        anchorName: 'restic backup',
        anchor: m.resticBackup,
        max: 1.2,
        target: '≤ 1.2 × restic backup',
      },
      Number.isFinite(m.repoBackup) ? undefined : repositoryError,
    ),
    resticRow(
      {
        measure: 'its second backup after the 1% change (`backup --repo --base latest`)',
        value: m.repoSecond,
        anchorName: 'restic 2nd backup',
        anchor: m.resticSecond,
        max: 1.0,
        target: "≤ 1.0 × restic's second backup",
      },
      Number.isFinite(m.repoSecond) ? undefined : repositoryError,
    ),
    // 5. worker memory
    row({
      measure: `worker peak RSS during the full backup (idle before: ${mib(m.workerIdleRss)})`,
      value: m.workerPeakRss,
      show: mib,
      max: 200 * 2 ** 20,
      target: '≤ 200 MiB',
    }),
    info({ measure: 'worker idle RSS before the full backup', value: m.workerIdleRss, show: mib }),
    // 6. scale
    empty.error
      ? failedRow({ measure: `${EMPTY_BUNDLES} empty bundles, one session`, error: empty.error, target: `≤ ${secs(EMPTY_TARGET_MS)}` })
      : row({
          measure: `${EMPTY_BUNDLES} empty bundles, one session${empty.serviceDied ? ` (onBackupServiceDied ×${empty.serviceDied})` : ''}`,
          value: empty.ms,
          show: secs,
          max: EMPTY_TARGET_MS,
          target: `≤ ${secs(EMPTY_TARGET_MS)}${EMPTY_BUNDLES === 1000 ? '' : ' (30 s per 1 000)'}`,
        }),
    ...scaleRows(),
    ...millionRows(),
    // 7. Temporal cost
    cost.error
      ? failedRow({ measure: `history events per bundle, backup of ${SMALL_BUNDLES} small bundles`, error: cost.error, target: '≤ 25 per bundle' })
      : row({
          measure: `history events per bundle, backup of ${SMALL_BUNDLES} small bundles (${cost.workflows} workflow runs)`,
          value: cost.perBundle,
          show: (v) => v.toFixed(1),
          max: 25,
          target: '≤ 25 per bundle',
        }),
    ...(cost.error
      ? []
      : [
          info({
            measure: `history events per session (${SMALL_BUNDLES} small bundles), all workflows`,
            value: cost.total,
            show: String,
            note: 'by workflow: see the notes',
          }),
        ]),
    ...(empty.error || empty.cost?.error
      ? []
      : [
          info({
            measure: `history events per bundle, ${EMPTY_BUNDLES} empty bundles`,
            value: empty.cost.perBundle,
            show: (v) => v.toFixed(1),
            note: `${empty.cost.total} in all`,
          }),
        ]),
    // the hand-over rate (the send-rate promise of the reference)
    ...results.handOver.map((h) =>
      h.error
        ? failedRow({ measure: `hand-over rate, set ${h.rate}/s (${h.files} files)`, error: h.error, target: 'within ±3% of set' })
        : row({
            measure: `hand-over rate, set ${h.rate}/s (${h.files} files)`,
            value: h.slope,
            show: perSec,
            anchorName: 'set',
            anchor: h.rate,
            showAnchor: (v) => `${v}/s`,
            within: 0.03,
            target: 'within ±3% of set',
          }),
    ),
    // repository deduplication
    ...(!restic
      ? [skipped({ measure: 'second full backup into a repository, 1% changed: added', why: noRestic, target: '≤ 2% of the first' })]
      : results.repository.error
        ? [failedRow({ measure: 'second full backup into a repository, 1% changed: added', error: results.repository.error, target: '≤ 2% of the first' })]
        : [
            row({
              measure: `second full backup into a repository, ${results.repository.changedFiles} small files changed (1%): added`,
              value: results.repository.second.dataAdded,
              show: mib,
              anchorName: 'first backup',
              anchor: results.repository.first.dataAdded,
              max: 0.02,
              target: '≤ 2% of the first',
            }),
            info({
              measure: 'repository raw data growth by that second full backup',
              value: results.repository.rawGrowth,
              show: (v) => `${(v * 100).toFixed(2)}%`,
            }),
          ]),
    // the anchors
    info({ measure: 'tar -cf (anchor)', value: m.tarCreate, show: secs }),
    info({ measure: 'tar -cf then sync -f on the archive (durable anchor)', value: m.tarCreateDurable, show: secs, note: 'timed together' }),
    info({ measure: 'tar -xf (anchor)', value: m.tarExtract, show: secs }),
    info({ measure: 'tar -xf then sync -f on its target (durable anchor)', value: m.tarExtractDurable, show: secs, note: 'timed together' }),
    ...(restic
      ? [
          info({ measure: 'restic backup (anchor)', value: m.resticBackup, show: secs }),
          info({ measure: 'restic restore (anchor)', value: m.resticRestore, show: secs }),
          info({ measure: 'restic restore then sync -f on its target (durable anchor)', value: m.resticRestoreDurable, show: secs, note: 'timed together' }),
          info({ measure: 'restic second backup, 1% changed (anchor)', value: m.resticSecond, show: secs, note: 'parent: the first snapshot' }),
        ]
      : [skipped({ measure: 'restic (anchor)', why: noRestic })]),
    info({ measure: 'full backup, whole runBackup call', value: m.ohbackupBackupCall, show: secs, note: 'incl. connect, worker check, capability file' }),
    ...(haveIncrement && !incrementError
      ? [
          row({
            measure: 'increment against the full backup',
            value: m.increment,
            show: secs,
            anchorName: 'full backup',
            anchor: m.ohbackupBackup,
            target: 'for comparison',
          }),
        ]
      : []),
  ];

  notes.push(
    `Data set: ${names.length} bundles, ${dataset.files} files, ${mib(dataset.bytes)} (seed ${seed}); medians of ${rounds} interleaved rounds (order rotated each round, the same data for every tool within a round); per-round values in the JSON.`,
    `Warm: the page cache was not dropped (no root tools assumed); the data set was just written and fits in RAM (${(os.totalmem() / 2 ** 30).toFixed(1)} GiB). Warm-up: one backup, restore and \`ohbackup backup\`, untimed.`,
    `Settled: before every timed step an untimed \`sync\` (median ${secs(median(results.settled.map((x) => x.ms)))}, longest ${secs(Math.max(0, ...results.settled.map((x) => x.ms)))}), so no step pays for the writeback of the ones before it; the page cache stays. ohbackup's restore ends with a syncfs of its target (durable once reported done) and its backup set is flushed before its summary says complete; tar -cf, tar -xf and restic restore flush nothing: their durable anchors (then \`sync -f\` on the archive or target, timed together) are shown beside the backup and restore targets, which stay against the plain anchors.`,
    `Full backup (session): runBackup with rate ${SEND_RATE}/s, timed from the session's start to runBackup's return (set complete, session released). As a user runs it: bin/ohbackup backup --out DIR --json BUNDLE… as a child process with the command's default rate, timed from spawn to exit (Node start, connection, worker check, capability file, session, set).`,
    `Restore: restoreFromSet (what \`ohbackup restore\` drives) onto an empty data root served by a second worker process started before the timer. Round 1's set, the command's set and the restored data root are compared with the device, untimed.`,
    `Second backups: after each round's first backups and restores, 1% of each bundle's small files rewritten; then (rotated) the increment (IncrementalBackupSession against the previous manifest), restic backing up the same folders again into the round's repository (its first snapshot the parent), and \`ohbackup backup --repo R --base latest\`.`,
    `Repository: each round a fresh local restic repository; the first backup is \`--incremental\` (every bundle in full, manifests kept, so the second can be an increment), session + set staged + restic's store, timed; the anchor is restic backing up the data folders directly.`,
    `Worker RSS: VmRSS of the backup worker process sampled every 100 ms during each full backup, with VmHWM reset (clear_refs) before it where allowed; the largest over rounds; idle = VmRSS at the backup's start.`,
    `Temporal cost: the history events of every workflow run open since the backup's start (the session, its bundle children, the device's claims workflow, capability requests, anything else), listed from the bench's own dev server and each history fetched; the events counted are those since the start.`,
    'Hand-over rate: one session per rate on a bundle of 2.1 MiB sparse files, updateSendRate in onBundleBegin, rate = the least-squares slope of file number over the time the worker let each file go (file.readyAt; manage.json included).',
  );
  if (withScale)
    notes.push(
      `Scale: data sets of ${SCALE_FACTORS.join(', ')}× the timed one (files per bundle and big-file sizes scaled), full backups interleaved over ${rounds} rounds; ratio = time / (factor × the 1× time).`,
    );
  if (withMillion)
    notes.push(
      `Million: one bundle of ${MILLION} files of 16–200 bytes in folders of 1 000; runBackup then restoreFromSet, both verified; RSS sampled as above on each worker; "longest history" = the largest history of any run of the backup's workflows (a run continues as new when Temporal suggests it).`,
    );
  notes.push(
    `Load average (1/5/15 min) at start ${loadAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} on ${os.cpus().length} CPUs: other work on the machine shows up in the figures.`,
  );

  const wallMs = performance.now() - benchStarted;
  console.log(
    `\nohbackup bench (${quick ? 'quick' : 'full'}${withScale ? ', --scale' : ''}${withMillion ? ', --million' : ''}), ${startedAt.toISOString()}, ${os.cpus().length} CPUs, Node ${process.version}\n` +
      `anchors: ${tools.tarVersion}; ${tools.resticVersion ?? 'no restic'}; ${tools.temporalVersion.split('\n')[0]}\n`,
  );
  console.log(formatRows(rows));
  console.log('');
  for (const n of notes) console.log(`- ${n}`);

  mkdirSync(benchDir, { recursive: true });
  const json = {
    version: 2,
    startedAt: startedAt.toISOString(),
    wallSeconds: wallMs / 1000,
    options: { quick, rounds, seed, keep, cpuProf, scale: withScale, million: withMillion, sendRate: SEND_RATE },
    loadAverage: { atStart: loadAtStart, atEnd: os.loadavg() },
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memBytes: os.totalmem(),
      node: process.version,
      platform: `${os.type()} ${os.release()}`,
    },
    tools: { tar: tools.tarVersion, restic: tools.resticVersion ?? null, resticPath: restic ?? null, temporal: tools.temporalVersion },
    dataset: {
      bundles: names.length,
      files: dataset.files,
      bytes: dataset.bytes,
      shape,
      rateBundles: rateCounts,
      emptyBundles: EMPTY_BUNDLES,
      smallBundles: { bundles: SMALL_BUNDLES, files: SMALL_FILES },
    },
    medians: m,
    rows,
    rounds: results.rounds,
    handOver: results.handOver,
    temporalCost: results.temporalCost,
    manyBundles: results.manyBundles,
    repository: results.repository ?? null,
    scale: results.scale ?? null,
    million: results.million ?? null,
    incrementBase: results.incrementBase ?? null,
    /** The untimed `sync` before each timed step of the rounds: how much writeback the step before left. */
    settled: results.settled,
    stepErrors,
    workerRss: results.workerRss,
    verified: results.verified,
    cpuProfileDir: cpuProf ? profDir : null,
    workFolder: keep ? work : null,
    notes,
  };
  writeFileSync(jsonPath, JSON.stringify(json, null, 2) + '\n');
  console.log(`\nJSON      ${jsonPath}`);
  if (cpuProf) console.log(`Profile   ${profDir} (written when the backup worker stops)`);
  if (keep) console.log(`Work      ${work} (kept)`);
  if (stepErrors.length) {
    console.log(`\n${stepErrors.length} step(s) failed (FAIL rows; full messages above and in the JSON):`);
    for (const e of stepErrors) console.log(`  ${e.step}: ${e.message}`);
  }
} catch (err) {
  failed = err;
  console.error(`\nBench failed: ${err?.stack ?? err}`);
  for (const w of Object.values(workers)) if (w) console.error(`--- ${w.label} worker output (tail):\n${w.tail()}`);
} finally {
  // Stop in order: the tool's connection, the workers (graceful, so a CPU profile is written), the server.
  await backup.closeConnection().catch(() => undefined);
  await Promise.all(Object.values(workers).map((w) => w?.stop()));
  await server?.stop().catch(() => undefined);
  killAllSync();
  removeWork();
}
console.log(`Wall time ${secs(performance.now() - benchStarted)}`);
process.exit(failed || stepErrors.length ? 1 : 0);
