// The repository figures: a full backup into a restic repository (session +
// store, backupToRepository, the path `ohbackup backup --repo` takes) against
// restic backing up the data directly; and the deduplication: a second full
// backup after rewriting 1% of the small files, as bytes it added to the
// repository against the first backup's.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { backupToRepository } from '../dist/client/runs/repositoryRuns.js';
import { Repository } from '../dist/engine/repository/index.js';
import { changeOnePercent } from './dataset.js';
import { withTimeout } from './ohbackup.js';

async function timedBackup(repository, bundles, rate, timeoutMs, what, tempDir, more = {}) {
  const t = performance.now();
  let storing;
  const r = await withTimeout(
    backupToRepository({
      repository,
      device: 'bench',
      bundles,
      rate,
      tempDir,
      // The kept staging tree (one per device and repository) inside the bench's work folder, removed with it.
      stagingDir: path.join(tempDir, 'repository-staging'),
      ...more,
      onStoreProgress: () => (storing ??= performance.now()),
    }),
    timeoutMs,
    what,
  );
  const ms = performance.now() - t;
  if (r.outcome !== 'done' || !r.snapshot || !r.store) {
    throw new Error(`${what} ended ${r.outcome}${r.error ? ` (${r.error.code} ${r.error.message})` : ''}`);
  }
  // Until restic's first progress: the session, the set written and staged (every entry checked against its index).
  return { ms, beforeStoreMs: (storing ?? t + ms) - t, snapshot: r.snapshot.id, store: r.store };
}

/** A fresh repository `name` in `work` (its password file beside it), for one round. */
export async function freshRepository({ work, restic, name }) {
  const passwordFile = path.join(work, `${name}.password`);
  writeFileSync(passwordFile, 'ohbackup-bench', { mode: 0o600 });
  return Repository.init({ repository: path.join(work, name), passwordFile, restic, tempDir: work });
}

/**
 * The rounds' repository figures, as a user keeping increments runs them:
 * `first` = `ohbackup backup --repo R --incremental` (every bundle in full,
 * manifests kept), `second` = `ohbackup backup --repo R --base latest` (only
 * what changed). Session + set + restic's store, timed.
 */
export async function repositoryBackup({ repository, bundles, rate, timeoutMs, work, second }) {
  const what = second ? 'the increment into the repository' : 'the backup into the repository';
  const x = await timedBackup(repository, bundles, rate, timeoutMs, what, work, second ? { base: 'latest' } : { incremental: true });
  return { ms: x.ms, beforeStoreMs: x.beforeStoreMs, storeSeconds: x.store.seconds, dataAdded: x.store.dataAdded, filesNew: x.store.filesNew };
}

export async function repositoryFigures({ work, restic, bundles, rate, dataset, seed, timeoutMs }) {
  const passwordFile = path.join(work, 'ohbackup-repo.password');
  writeFileSync(passwordFile, 'ohbackup-bench', { mode: 0o600 });
  const repository = await Repository.init({ repository: path.join(work, 'ohbackup-repo'), passwordFile, restic, tempDir: work });
  const first = await timedBackup(repository, bundles, rate, timeoutMs, 'the backup into the repository', work);
  const rawFirst = await repository.rawDataSize();
  const changed = changeOnePercent(dataset, seed);
  const second = await timedBackup(repository, bundles, rate, timeoutMs, 'the second full backup into the repository', work);
  const rawSecond = await repository.rawDataSize();
  const check = await repository.check();
  if (!check.ok) throw new Error(`the repository does not check clean: ${JSON.stringify(check.damaged.slice(0, 3))}`);
  return {
    first: {
      ms: first.ms,
      beforeStoreMs: first.beforeStoreMs,
      storeSeconds: first.store.seconds,
      bytesProcessed: first.store.bytesProcessed,
      dataAdded: first.store.dataAdded,
    },
    second: {
      ms: second.ms,
      beforeStoreMs: second.beforeStoreMs,
      storeSeconds: second.store.seconds,
      bytesProcessed: second.store.bytesProcessed,
      dataAdded: second.store.dataAdded,
    },
    changedFiles: changed.files,
    changedBytes: changed.bytes,
    rawFirst,
    rawSecond,
    /** What the second full backup added, as a part of the first backup's. */
    addedRatio: second.store.dataAdded / first.store.dataAdded,
    rawGrowth: (rawSecond - rawFirst) / rawFirst,
  };
}
