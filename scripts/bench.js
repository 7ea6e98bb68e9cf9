// `npm run bench [-- --quick] [-- --rounds N] [-- --keep] [-- --cpu-prof]`
//
// One run on a warm service: a headless Temporal dev server with a temporary
// database, one backup worker in its own process (its RSS measured through
// /proc) and a second worker process serving an empty data root for restores.
// A seeded data set is backed up and restored by ohbackup, tar and restic
// (when on PATH), interleaved over N rounds; medians are compared with the
// targets. Then the hand-over rate at set rates 1, 60, 300, 800/s and one
// session of 200 empty bundles. One table on stdout, the same as JSON in
// <OHBACKUP_STATE_DIR or .ohbackup>/bench/bench-<time>.json.
// Everything the bench starts is stopped, even on failure; the data set is
// removed at the end unless --keep.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backup } from '../dist/client/index.js';
import { restoreFromSet } from '../dist/client/runs/restoreSession.js';
import { compareBundleSet, compareRestoredBundle } from '../dist/client/sets/verify.js';
import { startDevServer } from '../dist/workers/devServer.js';
import { changeOnePercent, datasetShape, writeDataset, writeEmptyBundles, writeRateBundles } from '../bench/dataset.js';
import { incrementalRun, incrementalSession } from '../bench/increment.js';
import { fullBackup, handOverRate, manyBundles, restore } from '../bench/ohbackup.js';
import { repositoryFigures } from '../bench/repository.js';
import { findRestic } from '../dist/engine/repository/index.js';
import { killAllSync, onPath, output, procStatus, startWorkerProcess, timed, track, watchRss } from '../bench/procs.js';
import { failedRow, formatRows, info, median, mib, perSec, row, secs, skipped } from '../bench/report.js';
import { runBackup } from '../dist/client/runs/runBackup.js';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(`Usage: npm run bench [-- --quick] [-- --rounds N] [-- --keep] [-- --seed N] [-- --cpu-prof]
  --quick      a tenth of the data set (8 bundles × 200 files + two 2.4 MiB files), shorter rate runs
  --rounds N   timed rounds, interleaved (default 3, at least 3)
  --keep       keep the data set and work folder
  --seed N     data set seed (default 20240601)
  --cpu-prof   run the backup worker under node --cpu-prof (profile next to the JSON)`);
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
const rounds = Math.max(3, flagValue('--rounds', 3));
const seed = flagValue('--seed', 20240601);
const SEND_RATE = 800;
const RATES = [1, 60, 300, 800];
const RATE_SECONDS = quick ? 2 : 5;
const EMPTY_BUNDLES = 200;
const STEP_TIMEOUT_MS = (quick ? 10 : 30) * 60_000;

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
const emptyDir = (dir) => {
  rmSync(dir, { recursive: true, force: true });
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
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`\n${sig}: stopping the workers and the dev server${keep ? '' : ', removing the work folder'} ...`);
    process.exit(130);
  });
}

let server;
const workers = {};
const results = { rounds: [], handOver: [], manyBundles: undefined, workerRss: {}, verified: {} };
const notes = [];
let failed;
/** Steps after the rounds (increment, hand-over rates, many bundles) fail alone: recorded, shown as FAIL, the rest still runs. */
const stepErrors = [];
const stepFailed = (what, err) => {
  const message = String(err?.message ?? err).split('\n')[0];
  stepErrors.push({ step: what, message });
  log(`${what} FAILED: ${err?.message ?? err}`);
  return message;
};

try {
  /** The repository rows: the backup into a repository against restic's own backup, and the dedup of a second full backup. */
  const repositoryRows = (x, resticBackup, why) => {
    const timeTarget = '≤ 3 × restic backup';
    const dedupTarget = '≤ 2% of the first';
    if (!x)
      return [
        skipped({ measure: 'ohbackup backup into a repository', why, target: timeTarget }),
        skipped({ measure: 'second full backup, 1% changed: added', why, target: dedupTarget }),
      ];
    if (x.error)
      return [
        failedRow({ measure: 'ohbackup backup into a repository', error: x.error, target: timeTarget }),
        failedRow({ measure: 'second full backup, 1% changed: added', error: x.error, target: dedupTarget }),
      ];
    return [
      row({
        measure: `ohbackup backup into a repository (session + store)`,
        value: x.first.ms,
        show: secs,
        anchorName: 'restic backup',
        anchor: resticBackup,
        max: 3,
        target: timeTarget,
      }),
      row({
        measure: `second full backup, ${x.changedFiles} small files changed (1%): added`,
        value: x.second.dataAdded,
        show: mib,
        anchorName: 'first backup',
        anchor: x.first.dataAdded,
        max: 0.02,
        target: dedupTarget,
      }),
      info({ measure: 'repository raw data growth by the second full backup', value: x.rawGrowth, show: (v) => `${(v * 100).toFixed(2)}%` }),
    ];
  };

  log(`ohbackup bench: ${quick ? 'quick' : 'full'} data set, ${rounds} rounds, seed ${seed}; work folder ${work}`);

  // ------------------------------------------------------------ tools
  const tar = await onPath('tar');
  if (!tar) throw new Error('tar is not on PATH: the bench needs it as the anchor of the backup and restore targets.');
  // restic as ohbackup finds it (OHBACKUP_RESTIC, PATH, $(go env GOPATH)/bin, else built once): the anchor and the repositories' engine.
  const restic = await findRestic({ log }).then(
    (b) => b.path,
    (err) => (log(`restic not found: the restic columns and the repository figures are skipped (${err.message})`), undefined),
  );
  const tarVersion = (await output(tar, ['--version'])).split('\n')[0];
  const resticVersion = restic ? (await output(restic, ['version'])).trim() : undefined;
  log(`Anchors: ${tarVersion}${resticVersion ? `; ${resticVersion} (${restic})` : ''}`);
  const resticEnv = { ...process.env, RESTIC_PASSWORD: 'ohbackup-bench', RESTIC_CACHE_DIR: path.join(work, 'restic-cache'), RESTIC_PROGRESS_FPS: '0.1' };

  // ------------------------------------------------------------ data set
  let t = performance.now();
  const shape = datasetShape(quick);
  const dataset = writeDataset(dataRoot, shape, seed);
  const rateCounts = Object.fromEntries(RATES.map((r) => [r, Math.max(quick ? 3 : 6, r * RATE_SECONDS)]));
  const rateBundles = writeRateBundles(dataRoot, rateCounts);
  const empties = writeEmptyBundles(dataRoot, EMPTY_BUNDLES);
  const names = dataset.bundles.map((b) => b.name);
  const dataDirs = names.map((n) => `${n}/data`);
  log(
    `Data set: ${names.length} bundles, ${dataset.files} files, ${mib(dataset.bytes)} in ${secs(performance.now() - t)}; ` +
      `rate bundles ${RATES.map((r) => `${r}/s: ${rateCounts[r]} × 2.1 MiB (sparse)`).join(', ')}; ${EMPTY_BUNDLES} empty bundles`,
  );

  // ------------------------------------------------------------ service, workers
  t = performance.now();
  server = await startDevServer({ headless: true, port: 0, dbFile: path.join(work, 'temporal.db') });
  track(server.process);
  process.env.TEMPORAL_ADDRESS = server.address;
  const backupQueue = `ohbackup-bench-${process.pid}`;
  const restoreQueue = `ohbackup-bench-restore-${process.pid}`;
  process.env.OHBACKUP_TASK_QUEUE = backupQueue;
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
  rmSync(warmSet, { recursive: true, force: true });
  emptyDir(restoreRoot);
  log(`Warm-up (one backup and one restore, untimed) ${secs(performance.now() - t)}`);

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
    rmSync(out, { recursive: true, force: true });
  }

  // ------------------------------------------------------------ rounds
  const rotate = (list, k) => list.map((_, i) => list[(i + k) % list.length]);
  for (let r = 0; r < rounds; r++) {
    const res = { round: r + 1 };
    const set = path.join(work, `set-${r}`);
    const tarFile = path.join(work, `tar-${r}.tar`);
    const tarOut = path.join(work, `tar-x-${r}`);
    const repo = path.join(work, `restic-${r}`);
    const resticOut = path.join(work, `restic-x-${r}`);
    let full;

    const backups = {
      ohbackup: async () => {
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
      'tar -cf': async () => (res.tarCreateMs = await timed(tar, ['-cf', tarFile, '-C', dataRoot, ...dataDirs])),
      ...(restic && {
        'restic backup': async () => {
          await output(restic, ['-r', repo, 'init'], { env: resticEnv });
          return (res.resticBackupMs = await timed(restic, ['-r', repo, 'backup', '--quiet', ...dataDirs.map((d) => path.join(dataRoot, d))], {
            env: resticEnv,
          }));
        },
      }),
    };
    for (const name of rotate(Object.keys(backups), r)) {
      const ms = await backups[name]();
      log(`round ${r + 1}/${rounds}  ${name.padEnd(16)} ${secs(ms)}`);
    }

    const restores = {
      ohbackup: async () => {
        const x = await restore({ from: set, bundles: names, taskQueue: restoreQueue, timeoutMs: STEP_TIMEOUT_MS });
        return (res.ohbackupRestoreMs = x.ms);
      },
      'tar -xf': async () => {
        emptyDir(tarOut);
        return (res.tarExtractMs = await timed(tar, ['-xf', tarFile, '-C', tarOut]));
      },
      ...(restic && {
        'restic restore': async () => {
          emptyDir(resticOut);
          return (res.resticRestoreMs = await timed(restic, ['-r', repo, 'restore', 'latest', '--target', resticOut, '--quiet'], { env: resticEnv }));
        },
      }),
    };
    for (const name of rotate(Object.keys(restores), r)) {
      const ms = await restores[name]();
      log(`round ${r + 1}/${rounds}  ${name === 'ohbackup' ? 'ohbackup restore' : name.padEnd(16)} ${secs(ms)}`);
    }

    if (r === 0) {
      // Once, untimed: the set matches the device and the restore gives it back.
      t = performance.now();
      const problems = [];
      for (const n of names) {
        for (const p of await compareBundleSet(set, dataRoot, n)) problems.push(`set ${n}: ${p}`);
        for (const p of await compareRestoredBundle(dataRoot, restoreRoot, n)) problems.push(`restored ${n}: ${p}`);
      }
      if (problems.length) throw new Error(`round 1 did not verify (${problems.length} problems):\n  ${problems.slice(0, 10).join('\n  ')}`);
      results.verified = { backupSet: true, restore: true, files: full.files, bytes: full.bytes };
      log(`round 1 verified: the set and the restored data root match the device (${secs(performance.now() - t)}, untimed)`);
    }

    // The increment: 1% of the files changed since the last manifest (the base, then each round's increment); bench/increment.js.
    if (haveIncrement && !incrementError) {
      const changed = changeOnePercent(dataset, seed + 1000 + r);
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
        Object.assign(res, {
          incrementMs: inc.ms,
          incrementFiles: inc.files,
          incrementBytes: inc.bytes,
          changedFiles: changed.files,
          changedBytes: changed.bytes,
        });
        log(`round ${r + 1}/${rounds}  increment        ${secs(inc.ms)} (${changed.files} files changed; ${inc.files} files, ${mib(inc.bytes)} handed over)`);
      } catch (err) {
        incrementError = stepFailed(`round ${r + 1} increment`, err);
      }
      rmSync(out, { recursive: true, force: true });
    }

    results.rounds.push(res);
    for (const p of [set, tarFile, tarOut, repo, resticOut]) rmSync(p, { recursive: true, force: true });
    emptyDir(restoreRoot);
  }

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

  // ------------------------------------------------------------ orchestration overhead
  try {
    results.manyBundles = await manyBundles({ bundles: empties, timeoutMs: STEP_TIMEOUT_MS });
    log(
      `${EMPTY_BUNDLES} empty bundles in one session: ${secs(results.manyBundles.ms)}${results.manyBundles.serviceDied ? ` (onBackupServiceDied × ${results.manyBundles.serviceDied} meanwhile)` : ''}`,
    );
  } catch (err) {
    results.manyBundles = { error: stepFailed(`${EMPTY_BUNDLES} empty bundles`, err) };
  }

  // ------------------------------------------------------------ repository
  if (restic) {
    try {
      results.repository = await repositoryFigures({ work, restic, bundles: names, rate: SEND_RATE, dataset, seed: seed + 5000, timeoutMs: STEP_TIMEOUT_MS });
      const x = results.repository;
      log(
        `repository: full backup ${secs(x.first.ms)} (session + set staged ${secs(x.first.beforeStoreMs)}, restic's store ${x.first.storeSeconds.toFixed(2)} s, ${mib(x.first.dataAdded)} added); after 1% of the small files changed (${x.changedFiles} files), a second full one added ${mib(x.second.dataAdded)} = ${(x.addedRatio * 100).toFixed(2)}% (raw data +${(x.rawGrowth * 100).toFixed(2)}%)`,
      );
    } catch (err) {
      results.repository = { error: stepFailed('repository', err) };
    }
  }

  results.workerRss.peakSinceLastFullBackupStart = procStatus(workers.backup.pid, 'VmHWM');
  results.workerRss.restoreWorkerLifetimePeak = procStatus(workers.restore.pid, 'VmHWM');

  // ------------------------------------------------------------ report
  const med = (k) => median(results.rounds.map((x) => x[k]));
  const m = {
    ohbackupBackup: med('ohbackupBackupMs'),
    ohbackupBackupCall: med('ohbackupBackupCallMs'),
    tarCreate: med('tarCreateMs'),
    resticBackup: restic ? med('resticBackupMs') : undefined,
    ohbackupRestore: med('ohbackupRestoreMs'),
    tarExtract: med('tarExtractMs'),
    resticRestore: restic ? med('resticRestoreMs') : undefined,
    increment: haveIncrement ? med('incrementMs') : undefined,
    workerPeakRss: Math.max(...results.rounds.map((x) => x.workerRss?.peak ?? 0)),
  };
  const fullLabel = `ohbackup full backup (send rate ${SEND_RATE}/s)`;
  const restoreLabel = 'ohbackup restore (worker already up)';
  const noRestic = 'restic not found (OHBACKUP_RESTIC, PATH, or Go to build it)';
  const rows = [
    row({ measure: fullLabel, value: m.ohbackupBackup, show: secs, anchorName: 'tar -cf', anchor: m.tarCreate, max: 2.5, target: '≤ 2.5 × tar -cf' }),
    restic
      ? row({
          measure: fullLabel,
          value: m.ohbackupBackup,
          show: secs,
          anchorName: 'restic backup',
          anchor: m.resticBackup,
          max: 0.5,
          target: '≤ 0.5 × restic backup',
        })
      : skipped({ measure: `${fullLabel} vs restic`, why: noRestic, target: '≤ 0.5 × restic backup' }),
    row({ measure: restoreLabel, value: m.ohbackupRestore, show: secs, anchorName: 'tar -xf', anchor: m.tarExtract, max: 2.5, target: '≤ 2.5 × tar -xf' }),
    restic
      ? row({
          measure: restoreLabel,
          value: m.ohbackupRestore,
          show: secs,
          anchorName: 'restic restore',
          anchor: m.resticRestore,
          max: 0.5,
          target: '≤ 0.5 × restic restore',
        })
      : skipped({ measure: `${restoreLabel} vs restic`, why: noRestic, target: '≤ 0.5 × restic restore' }),
    incrementError
      ? failedRow({ measure: 'increment after changing 1% of the files', error: incrementError, target: '≤ 10% of full' })
      : haveIncrement
        ? row({
            measure: 'increment after changing 1% of the files',
            value: m.increment,
            show: secs,
            anchorName: 'full backup',
            anchor: m.ohbackupBackup,
            max: 0.1,
            target: '≤ 10% of full',
          })
        : row({
            measure: 'increment after changing 1% of the files',
            na: 'n/a (incremental backup not built yet)',
            anchorName: 'full backup',
            target: '≤ 10% of full',
          }),
    row({
      measure: `worker peak RSS during the full backup (idle before: ${mib(median(results.rounds.map((x) => x.workerRss?.atStart)))})`,
      value: m.workerPeakRss,
      show: mib,
      max: 300 * 1024 * 1024,
      target: '≤ 300 MiB',
    }),
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
    results.manyBundles.error
      ? failedRow({ measure: `${EMPTY_BUNDLES} empty bundles, one session`, error: results.manyBundles.error, target: '≤ 30 s' })
      : row({
          measure: `${EMPTY_BUNDLES} empty bundles, one session${results.manyBundles.serviceDied ? ` (onBackupServiceDied ×${results.manyBundles.serviceDied})` : ''}`,
          value: results.manyBundles.ms,
          show: secs,
          max: 30_000,
          target: '≤ 30 s',
        }),
    ...repositoryRows(results.repository, m.resticBackup, noRestic),
    info({ measure: 'tar -cf (anchor)', value: m.tarCreate, show: secs }),
    info({ measure: 'tar -xf (anchor)', value: m.tarExtract, show: secs }),
    restic ? info({ measure: 'restic backup (anchor)', value: m.resticBackup, show: secs }) : skipped({ measure: 'restic backup (anchor)', why: noRestic }),
    restic ? info({ measure: 'restic restore (anchor)', value: m.resticRestore, show: secs }) : skipped({ measure: 'restic restore (anchor)', why: noRestic }),
    info({
      measure: 'ohbackup full backup, whole runBackup call',
      value: m.ohbackupBackupCall,
      show: secs,
      note: 'incl. connect, worker check, capability file',
    }),
  ];

  notes.push(
    `Data set: ${names.length} bundles, ${dataset.files} files, ${mib(dataset.bytes)} (seed ${seed}); medians of ${rounds} interleaved rounds (order rotated each round); per-round values in the JSON.`,
    `Warm: the page cache was not dropped (no root tools assumed); the data set was just written and fits in RAM (${(os.totalmem() / 2 ** 30).toFixed(1)} GiB).`,
    `Full backup: runBackup with rate ${SEND_RATE}/s (the reference default of 60/s would dominate); the send rate throttles only the number of fds handed over: tar slices of ≤ 6000 entries (≤ 100 MiB) and files > 2 MiB alone. Timed from the session's start to runBackup's return (set complete, session released).`,
    'ohbackup packs into the bundle temp area (SHA-256 on the way, no fsync: the area is transient) and the tool links each handed-over file into the set when it can (same filesystem, its own file), else copies it in the kernel; tar and restic write once and do not fsync.',
    `Restore: restoreFromSet (what \`ohbackup restore\` drives) onto an empty data root served by a second worker process started before the timer, so worker start-up is not counted (\`restore --to\` would count it).`,
    `Worker RSS: VmRSS of the backup worker process sampled every 100 ms during each full backup, with VmHWM reset (clear_refs) before it where allowed; the largest over rounds.`,
    'Hand-over rate: one session per rate on a bundle of 2.1 MiB sparse files, updateSendRate in onBundleBegin, rate = the least-squares slope of file number over the time the worker let each file go (file.readyAt; manage.json included). What the tool saw (onFileReady times: the same plus the batching and polling jitter of the event transport, which over a few seconds bends the slope by several per cent) is in the log and the JSON.',
  );
  notes.push(
    haveIncrement
      ? `Increment: IncrementalBackupSession against the previous manifest (a base run with lastIncrementalTime 0 first, untimed, ${results.incrementBase ? secs(results.incrementBase.ms) : 'failed'}; then each round's increment is the next base) after rewriting 1% of each bundle's small files; timed like the full backup (session start → handed files copied into a set, session released).`
      : 'Increment: backup.IncrementalBackupSession is not in dist/client/backup.js yet; the measurement hook is bench/increment.js.',
  );
  if (results.repository && !results.repository.error)
    notes.push(
      `Repository: backupToRepository (what \`ohbackup backup --repo\` runs) into a fresh local restic repository, device "bench", once (not a median): the session writes the set into a temp folder in the work folder, every entry is checked against its index and staged as a file, restic stores it (session + staging ${secs(results.repository.first.beforeStoreMs)}, restic ${results.repository.first.storeSeconds.toFixed(2)} s). Then 1% of each bundle's small files rewritten and a second *full* backup: "added" is restic's data_added of it against the first's; the raw-data growth is restic stats --mode raw-data. The anchor is restic backing up the data folders directly (the rounds' median).`,
    );
  notes.push(
    `Load average (1/5/15 min) at start ${loadAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} on ${os.cpus().length} CPUs: other work on the machine shows up in the figures.`,
  );

  const wallMs = performance.now() - benchStarted;
  console.log(
    `\nohbackup bench (${quick ? 'quick' : 'full'}), ${startedAt.toISOString()}, ${os.cpus().length} CPUs, Node ${process.version}, ${tarVersion}${resticVersion ? `, ${resticVersion.split(' compiled')[0]}` : ''}\n`,
  );
  console.log(formatRows(rows));
  console.log('');
  for (const n of notes) console.log(`- ${n}`);

  mkdirSync(benchDir, { recursive: true });
  const json = {
    version: 1,
    startedAt: startedAt.toISOString(),
    wallSeconds: wallMs / 1000,
    options: { quick, rounds, seed, keep, cpuProf, sendRate: SEND_RATE },
    loadAverage: { atStart: loadAtStart, atEnd: os.loadavg() },
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memBytes: os.totalmem(),
      node: process.version,
      platform: `${os.type()} ${os.release()}`,
    },
    tools: { tar: tarVersion, restic: resticVersion ?? null },
    dataset: { bundles: names.length, files: dataset.files, bytes: dataset.bytes, shape, rateBundles: rateCounts, emptyBundles: EMPTY_BUNDLES },
    medians: m,
    rows,
    rounds: results.rounds,
    handOver: results.handOver,
    manyBundles: results.manyBundles,
    incrementBase: results.incrementBase ?? null,
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
