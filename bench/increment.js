// The incremental-backup measurement, kept apart so it stays simple to change.
//
// backup.IncrementalBackupSession (when dist/client/backup.js has it): a base
// run with lastIncrementalTime 0 gives every bundle's manifest (the
// manifestFd handed with its manage.json); after 1% of the files changed, an
// increment against that manifest is timed like the full backup (session
// start → every handed file copied into a set folder, session released) and
// its own manifest becomes the next round's base. Without the class the bench
// prints "n/a (incremental backup not built yet)".
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as backupModule from '../dist/client/backup.js';
import { RUN_CONCURRENT_BUNDLES } from '../dist/client/runs/setup.js';
import { BackupSetWriter } from '../dist/client/sets/writer.js';
import { withTimeout } from './ohbackup.js';

/** The incremental session class, when dist/client/backup.js has one. */
export function incrementalSession() {
  return typeof backupModule.IncrementalBackupSession === 'function' ? backupModule.IncrementalBackupSession : undefined;
}

/**
 * One IncrementalBackupSession of `bundles`: full when `base` is undefined,
 * else an increment against `base` (bundle → manifest file, with its time).
 * Handed files are copied into `out`; each bundle's new manifest is written to
 * `manifestDir`. Resolves with the time from session start to release.
 * `mark(what, bundleName?)` is told of each callback and step, as it happens (a trace's tool side).
 */
export async function incrementalRun({ bundles, base, out, manifestDir, rate, timeoutMs, mark = () => undefined }) {
  const Session = incrementalSession();
  if (!Session) return undefined;
  mkdirSync(manifestDir, { recursive: true });
  const set = new BackupSetWriter(out);
  await set.init();
  const manifests = {};
  const errors = [];
  let files = 0;
  let bytes = 0;
  let allEnded;
  const ended = new Promise((resolve) => (allEnded = resolve));
  const baseFds = bundles.map((name) => (base ? openSync(base[name].file, 'r') : -1));
  const started = performance.now();
  const session = new Session(
    {
      onBundleBegin(err, name) {
        mark('onBundleBegin', name);
        if (err) errors.push(`${name}: onBundleBegin ${err.code} ${err.message}`);
        else if (rate !== undefined) backupModule.updateSendRate(name, rate);
      },
      onFileReady(err, file) {
        mark('onFileReady', file.bundleName);
        if (err) return void errors.push(`${file.bundleName}/${file.uri}: ${err.code} ${err.message}`);
        if (typeof file.manifestFd === 'number' && file.manifestFd >= 0) {
          if (file.uri === 'manage.json') {
            const text = readFileSync(file.manifestFd, 'utf8');
            const target = path.join(manifestDir, `${file.bundleName}.jsonl`);
            writeFileSync(target, text);
            manifests[file.bundleName] = { file: target, time: JSON.parse(text.slice(0, text.indexOf('\n'))).time };
          }
          closeSync(file.manifestFd);
        }
        files++;
        bytes += fstatSync(file.fd).size;
        set.keep(file.bundleName, file.uri, file.fd);
      },
      onBundleEnd: (err, name) => {
        mark('onBundleEnd', name);
        if (err) errors.push(`${name}: onBundleEnd ${err.code} ${err.message}`);
      },
      onAllBundlesEnd: (err) => {
        mark('onAllBundlesEnd');
        if (err) errors.push(`onAllBundlesEnd ${err.code} ${err.message}`);
        allEnded();
      },
      onBackupServiceDied: () => undefined,
      // As the command line's whole runs do (client/runs/setup.ts): every bundle's scan at once, not in waves of the reference's 3.
    },
    { maxConcurrentBundles: RUN_CONCURRENT_BUNDLES },
  );
  try {
    await session.appendBundles(
      bundles.map((bundleName, i) => ({ bundleName, lastIncrementalTime: base ? base[bundleName].time : 0, manifestFd: baseFds[i] })),
    );
    mark('appended');
    await withTimeout(ended, timeoutMs, 'the incremental backup');
    await set.flush();
    mark('set flushed');
  } finally {
    for (const fd of baseFds) if (fd >= 0) closeSync(fd);
    await session.release().catch(() => undefined);
    mark('released');
  }
  const ms = performance.now() - started;
  if (errors.length) throw new Error(`the incremental backup had errors:\n  ${errors.slice(0, 5).join('\n  ')}`);
  const missing = bundles.filter((b) => !manifests[b]);
  if (missing.length) throw new Error(`the incremental backup handed over no manifest for ${missing.join(', ')}`);
  return { ms, files, bytes, manifests, sessionId: session.sessionId };
}
