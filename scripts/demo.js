// `npm run demo`: a sample device, a local Temporal server with its Web UI, one
// worker, and one backup of every backup-able bundle, run by the same function
// as `ohbackup backup`; then the set is checked against the device byte for byte.
// Then the set is restored into a fresh, empty data root, as `ohbackup restore
// --to` does (a second in-process worker on a private task queue, same server),
// and every restored bundle is compared with the device's.
// Then the device is backed up once more into the state folder's restic
// repository and restored from that snapshot into another empty data root, verified.
// Exit 0 only if every bundle is backed up, restored and both are verified.
import net from 'node:net';
import path from 'node:path';
import { writeSampleDevice } from '../dist/engine/sampleDevice.js';
import { backup } from '../dist/client/index.js';
import { runBackup } from '../dist/client/runs/runBackup.js';
import { backupToRepository, restoreFromRepository } from '../dist/client/runs/repositoryRuns.js';
import { openStateRepository } from '../dist/engine/repository/index.js';
import { planRestore, runRestore } from '../dist/client/runs/runRestore.js';
import { compareBundleSet, compareRestoredBundle } from '../dist/client/sets/verify.js';
import { readSettings } from '../dist/config/env.js';
import { startDevServer } from '../dist/workers/devServer.js';
import { startWorker } from '../dist/workers/embedded.js';
import { runWorker } from '../dist/workers/runWorker.js';

const started = Date.now();
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const mib = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** The demo's progress: a line per session start, bundle end and notice (the CLI's bars are its own). */
const progressLines = (e) => {
  if (e.type === 'start') console.log(`Session ${e.sessionId}: ${e.bundles.join(', ')}`);
  else if (e.type === 'end')
    console.log(
      `  ${e.outcome.state.padEnd(10)} ${e.outcome.bundleName}  ${e.outcome.files} files${e.outcome.error ? `  ${e.outcome.error.code} ${e.outcome.error.message}` : ''}`,
    );
  else if (e.type === 'notice') console.log(`  ${e.message}`);
};

/** Whether a port can be listened on right now (the dev server needs it free). */
const isFree = (port) =>
  new Promise((resolve) => {
    const srv = net.createServer().once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });

// A fresh state folder per run, so the demo never meets an earlier run's database or sessions.
const stateDir = path.resolve(process.env.OHBACKUP_STATE_DIR ?? `.ohbackup/demo-${new Date().toISOString().replace(/[:.]/g, '-')}`);
process.env.OHBACKUP_STATE_DIR = stateDir;
console.log(`State folder  ${stateDir}`);

const device = await writeSampleDevice(path.join(stateDir, 'device'), { scale: 1 });
const backupable = device.bundles.filter((b) => b.backupable);
console.log(`Device        ${device.dir}: ${device.bundles.length} bundles, ${backupable.length} backup-able`);

// The usual ports when free, so the links are the familiar ones; else any free ones.
const server = await startDevServer({
  port: (await isFree(7233)) ? 7233 : 0,
  uiPort: (await isFree(8233)) ? 8233 : 0,
  dbFile: path.join(stateDir, 'temporal.db'),
}).catch((err) => {
  // E.g. no Temporal CLI: its message says how to get one.
  console.error(err.message);
  process.exit(1);
});
// From here on, everything must stop the server, whatever happens.
let verified = false;
const stopWorker = new AbortController();
let worker;
try {
  // The backup connects as `ohbackup backup` does: through the environment.
  process.env.TEMPORAL_ADDRESS = server.address;
  process.env.OHBACKUP_UI_URL = server.uiUrl;
  console.log(`Temporal      ${server.address}, Web UI ${server.uiUrl}`);

  await new Promise((resolve, reject) => {
    const dataRoot = device.dir;
    worker = runWorker({ settings: readSettings(), dataRoot, address: server.address, signal: stopWorker.signal, onReady: resolve });
    worker.catch(reject);
  });

  const backupStarted = Date.now();
  const result = await runBackup({ out: path.join(stateDir, 'backup-set'), onProgress: progressLines });
  const backupMs = Date.now() - backupStarted;
  if (result.error) console.log(`Session failed: ${result.error.code} ${result.error.message}`);
  console.log(`Backup set    ${result.out}\n`);

  // Every backup-able bundle must be in the set and match the device.
  verified = result.outcome === 'done';
  console.log('Verifying the set against the device:');
  for (const b of backupable) {
    const problems = await compareBundleSet(result.out, device.dir, b.name).catch((err) => [err.message]);
    verified &&= problems.length === 0;
    console.log(problems.length ? `  ${b.name}: ${problems.length} mismatches\n    ${problems.slice(0, 10).join('\n    ')}` : `  ${b.name}: OK`);
  }

  const files = result.bundles.reduce((n, b) => n + b.files, 0);
  const bytes = result.bundles.reduce((n, b) => n + b.bytes, 0);
  console.log(`\n${verified ? 'Verified' : 'NOT verified'}: ${files} files, ${mib(bytes)} backed up in ${seconds(backupMs)}.`);
  console.log(`Session in the Temporal UI: ${result.uiUrl}`);

  // The set, restored into an empty data root, must give back every bundle as the device has it.
  let restored = false;
  if (verified) {
    const to = path.join(stateDir, 'restored');
    console.log(`\nRestoring the set into an empty data root ${to}:`);
    const restoreStarted = Date.now();
    const plan = planRestore({ from: result.out, to });
    const target = await startWorker(to);
    let r;
    try {
      await target.ready;
      r = await runRestore(plan, { taskQueue: target.taskQueue, workerStopped: target.stopped, onProgress: progressLines });
    } finally {
      await target.stop();
    }
    const restoreMs = Date.now() - restoreStarted;
    restored = r.outcome === 'done';
    if (r.error) console.log(`Restore session failed: ${r.error.code} ${r.error.message}`);
    for (const b of r.bundles) {
      const problems =
        b.state === 'done'
          ? await compareRestoredBundle(device.dir, to, b.bundleName).catch((err) => [err.message])
          : [`${b.state} ${b.error?.code ?? ''} ${b.error?.message ?? ''}`];
      restored &&= problems.length === 0;
      console.log(
        problems.length
          ? `  ${b.bundleName}: NOT restored (${problems.length} problems)\n    ${problems.slice(0, 10).join('\n    ')}`
          : `  ${b.bundleName}: restore verified`,
      );
    }
    restored &&= r.bundles.length === backupable.length;
    console.log(`${restored ? 'Verified' : 'NOT verified'}: ${r.bundles.length} bundles restored in ${seconds(restoreMs)} (worker start included).`);
    console.log(`Restore session in the Temporal UI: ${r.uiUrl}`);
  } else {
    console.log('Restore skipped: the backup is not verified.');
  }
  verified &&= restored;

  // The same device into the state folder's repository (made on first use, its password file 0600 beside it),
  // then restored from that snapshot into another empty data root: what `ohbackup backup` / `restore --from latest` do.
  if (verified) {
    const repoStarted = Date.now();
    const repository = await openStateRepository(stateDir);
    console.log(`\nBacking up into the state folder's repository ${repository.name}:`);
    const stored = await backupToRepository({ repository, device: 'demo', onProgress: progressLines });
    let fromRepo = stored.outcome === 'done' && !!stored.snapshot;
    if (stored.store)
      console.log(
        `Snapshot      ${stored.snapshot?.shortId}: ${mib(stored.store.bytesProcessed)} read, ${mib(stored.store.dataAdded)} added to the repository`,
      );
    if (fromRepo) {
      const to = path.join(stateDir, 'restored-from-repository');
      const target = await startWorker(to);
      let r;
      try {
        await target.ready;
        r = await restoreFromRepository({
          repository,
          snapshot: stored.snapshot.id,
          to,
          taskQueue: target.taskQueue,
          workerStopped: target.stopped,
          onProgress: progressLines,
        });
      } finally {
        await target.stop();
      }
      fromRepo = r.outcome === 'done' && r.bundles.length === backupable.length;
      for (const b of r.bundles) {
        const problems =
          b.state === 'done' ? await compareRestoredBundle(device.dir, to, b.bundleName).catch((err) => [err.message]) : [`${b.state} ${b.error?.code ?? ''}`];
        fromRepo &&= problems.length === 0;
        console.log(
          problems.length ? `  ${b.bundleName}: NOT restored (${problems.slice(0, 3).join('; ')})` : `  ${b.bundleName}: restore from the snapshot verified`,
        );
      }
    }
    console.log(`${fromRepo ? 'Verified' : 'NOT verified'}: backup into the repository and restore from its snapshot in ${seconds(Date.now() - repoStarted)}.`);
    verified &&= fromRepo;
  }
  // The database outlives the server, so the session can be browsed again later.
  console.log('The server stops with the demo; to browse this session again, run (UI on http://127.0.0.1:8233):');
  console.log(`  OHBACKUP_STATE_DIR=${stateDir} node dist/cli/main.js dev --data-root ${device.dir}`);
} catch (err) {
  console.error(`Demo failed: ${err?.message ?? err}`);
} finally {
  stopWorker.abort();
  await worker?.catch(() => undefined);
  await backup.closeConnection();
  await server.stop();
}
console.log(`Wall time ${seconds(Date.now() - started)} (sample device, server start, worker start, backup, restore, verification).`);
process.exit(verified ? 0 : 1);
