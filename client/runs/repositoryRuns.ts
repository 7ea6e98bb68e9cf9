/**
 * Whole runs with a repository instead of a set folder, for the command line
 * (`--repo`), schedules and scripts: a backup session writes its set into a
 * private temp folder, which is then stored as one snapshot and removed; a
 * restore rebuilds the snapshot's chain of sets into a private temp folder
 * and restores it through the plain set path. The repository (and its
 * password) stays on this host: nothing about it enters Temporal.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { runOutcome } from '../../common/rules.js';
import type { BundleOutcome } from '../../common/session.js';
import { openStateRepository, Repository, type SnapshotInfo, type StoreProgress, type StoreSummary } from '../../engine/repository/index.js';
import type { RepositorySpec } from '../../config/repository.js';
import { runBackup, type BackupRunResult, type RunBackupOptions } from './runBackup.js';
import { planRestore, runRestore, type RestoreRequest, type RestoreRunResult, type RunRestoreOptions } from './runRestore.js';
import { SetupError } from './setup.js';
import { readSettings } from '../../config/env.js';

export interface RepositoryBackupOptions extends Omit<RunBackupOptions, 'out' | 'base'> {
  repository: Repository;
  /** The device backed up: the snapshot's hostname. */
  device: string;
  /** An increment of this snapshot (ID, prefix, `latest`); its bundles without a manifest go in full. */
  base?: string;
  /** Where the private temp folders go (default the OS temp folder; the same filesystem as the worker's files lets big files be linked). */
  tempDir?: string;
  /**
   * Where the device's staging tree is kept between backups (Repository.storeSet's keepStaging):
   * default `<state folder>/repository-staging`; false stages privately each time.
   */
  stagingDir?: string | false;
  onStoreProgress?: (p: StoreProgress) => void;
}

export interface RepositoryBackupResult extends Omit<BackupRunResult, 'out'> {
  repository: string;
  /** The snapshot made (none when no bundle was backed up, or storing failed). */
  snapshot?: SnapshotInfo;
  store?: StoreSummary;
  baseSnapshot?: SnapshotInfo;
}

/** Opens the repository a spec names (config/repository.ts); the state folder's one is made on first use. */
export function openRepositorySpec(spec: RepositorySpec): Promise<Repository> {
  if (spec.kind === 'state') return openStateRepository(spec.stateDir);
  return Repository.open({ repository: spec.repository, passwordFile: spec.passwordFile });
}

/** The state folder's kept staging trees (one per device and repository). */
export const STAGING_DIR = 'repository-staging';

async function withTemp<T>(tempDir: string | undefined, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tempDir ?? os.tmpdir(), 'ohbackup-run-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The increment's base (its manifests read from the kept tree when that holds the base snapshot). */
async function materializeBase(
  repository: Repository,
  ref: string,
  dir: string,
  device: string,
  keepStaging: string | false,
  among: SnapshotInfo[],
): Promise<SnapshotInfo> {
  const { fromKeptTree: _kept, ...s } = await repository.materializeBase(ref, dir, { device, among, ...(keepStaging ? { keepStaging } : {}) });
  return s;
}

export async function backupToRepository(opts: RepositoryBackupOptions): Promise<RepositoryBackupResult> {
  const { repository, device, base, tempDir, stagingDir, onStoreProgress, ...run } = opts;
  const keepStaging = stagingDir ?? path.join(readSettings().stateDir, STAGING_DIR);
  return withTemp(tempDir, async (tmp) => {
    // One listing serves the base's resolve and the store (each restic call opens the repository again).
    const listing = base ? repository.snapshots({ device, signal: run.signal }) : undefined;
    listing?.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    // `latest` is, nearly always, what the kept tree stored last: the session starts on that guess while restic
    // lists (its key derivation alone is half a second), and nothing is stored unless the listing confirms it.
    const guess =
      base === 'latest' && keepStaging ? await repository.guessLatestBase(path.join(tmp, 'guess'), { device, keepStaging }).catch(() => undefined) : undefined;
    if (guess && listing) {
      const r = await storeRun(repository, device, run, tmp, keepStaging, onStoreProgress, listing, {
        id: guess.id,
        dir: path.join(tmp, 'guess'),
        confirm: (listed) => repository.confirmsGuess(guess, listed, device),
      });
      if (r) return r;
      await rm(path.join(tmp, 'set'), { recursive: true, force: true });
    }
    const listed = listing ? await listing : undefined;
    const baseSnapshot = base && listed ? await materializeBase(repository, base, path.join(tmp, 'base'), device, keepStaging, listed) : undefined;
    if (guess && baseSnapshot) {
      // The session just run (and shown, also in the Temporal UI) stored nothing: say why a second one starts.
      run.onProgress?.({
        type: 'notice',
        message:
          `The kept staging tree's last snapshot ${guess.id.slice(0, 8)} is not the latest of ${device} (${baseSnapshot.shortId} is): ` +
          `that session's set is dropped and the backup runs again as an increment of ${baseSnapshot.shortId}.`,
      });
    }
    const known = baseSnapshot && { id: baseSnapshot.id, dir: path.join(tmp, 'base'), confirm: () => baseSnapshot };
    return (await storeRun(repository, device, run, tmp, keepStaging, onStoreProgress, listed, known))!;
  });
}

/** The guess was wrong: `latest` is not the snapshot the session was an increment of. */
class BaseMoved extends Error {}

/** The listing beside the session failed (no repository, a wrong password): its error is the run's, as before a session. */
class ListingFailed extends Error {
  constructor(readonly reason: unknown) {
    super('the listing failed');
  }
}

/**
 * One session into the set folder, staged while it runs and stored; with `base`, an increment of the base set in
 * `base.dir`, which `base.confirm` must find among the listing once the session is over. When it does not (a guessed
 * base that is not `latest`), nothing is stored and the result is undefined. A listing still under way (a promise)
 * that fails stops the session: nothing could be stored, and its error is the run's.
 */
async function storeRun(
  repository: Repository,
  device: string,
  run: Omit<RepositoryBackupOptions, 'repository' | 'device' | 'base' | 'tempDir' | 'stagingDir' | 'onStoreProgress'>,
  tmp: string,
  keepStaging: string | false,
  onStoreProgress: ((p: StoreProgress) => void) | undefined,
  listing: SnapshotInfo[] | Promise<SnapshotInfo[]> | undefined,
  base: { id: string; dir: string; confirm: (listed: SnapshotInfo[]) => SnapshotInfo | undefined } | undefined,
): Promise<RepositoryBackupResult | undefined> {
  const setDir = path.join(tmp, 'set');
  let baseSnapshot: SnapshotInfo | undefined;
  const resultOf = ({ out: _out, base: _base, ...result }: BackupRunResult): RepositoryBackupResult => ({
    ...result,
    repository: repository.name,
    ...(baseSnapshot ? { baseSnapshot } : {}),
  });
  let r: BackupRunResult | undefined;
  let signal = run.signal;
  if (listing instanceof Promise) {
    const stop = new AbortController();
    listing.catch(() => stop.abort());
    signal = run.signal ? AbortSignal.any([run.signal, stop.signal]) : stop.signal;
  }
  try {
    const stored = await repository.storeWhileWriting(
      { device, ...(base ? { base: base.id } : {}) },
      async (bundleDone) => {
        r = await runBackup({
          ...run,
          ...(signal ? { signal } : {}),
          out: setDir,
          ...(base ? { base: base.dir, incremental: true } : {}),
          // Each bundle whose files are all in the set is staged while the session goes on (the summary has the last word).
          onProgress: (e) => {
            if (e.type === 'end' && e.outcome.state === 'done') bundleDone(setDir, e.outcome.bundleName);
            run.onProgress?.(e);
          },
        });
        if (base) {
          const listed = await Promise.resolve(listing ?? []).catch((err: unknown) => {
            throw new ListingFailed(err);
          });
          baseSnapshot = base.confirm(listed);
          if (!baseSnapshot) throw new BaseMoved();
        }
        return r.bundles.some((b) => b.state === 'done') ? setDir : undefined;
      },
      onStoreProgress,
      {
        signal: run.signal,
        // This run's session is new to the repository: the listing still holds all the store needs.
        ...(listing ? { snapshots: listing } : {}),
        // The set is this run's own and removed right after: its big files may move into the kept tree.
        ...(keepStaging ? { keepStaging, moveBigFiles: true } : {}),
      },
    );
    return { ...resultOf(r!), ...(stored ? { snapshot: stored.snapshot, store: stored.summary } : {}) };
  } catch (err) {
    if (err instanceof BaseMoved) return undefined;
    if (err instanceof ListingFailed) throw err.reason;
    // The session's own failures (refused before it began) are the caller's, as they were.
    if (!r) throw err;
    const error: ErrorInfo = { code: ErrorCode.IO_ERROR, message: `Storing the backup in ${repository.name} failed: ${(err as Error).message}` };
    return { ...resultOf(r), error: r.error ?? error, outcome: 'failed' as const };
  }
}

export interface RepositoryRestoreOptions extends RunRestoreOptions, Omit<RestoreRequest, 'from'> {
  repository: Repository;
  /** The snapshot (ID, prefix, `latest`, `session:<id>`); an increment brings its chain. */
  snapshot: string;
  /** Whose snapshot `latest` means. */
  device?: string;
  tempDir?: string;
}

export interface RepositoryRestoreResult extends RestoreRunResult {
  repository: string;
  /** The chain restored, root first. */
  snapshots: SnapshotInfo[];
}

/**
 * Restores a snapshot (and its bases) from the repository. A bundle the
 * repository cannot give back intact is not restored and is reported failed
 * (13500008); the device's data of that bundle is left as it was.
 */
export async function restoreFromRepository(opts: RepositoryRestoreOptions): Promise<RepositoryRestoreResult> {
  const { repository, snapshot, device, tempDir, ...run } = opts;
  return withTemp(tempDir, async (tmp) => {
    const chain = await repository.chain(snapshot, { device });
    const sets = await repository.materializeChain(chain[chain.length - 1]!.id, path.join(tmp, 'sets'), {
      bundles: run.bundles,
      keepGoing: true,
      signal: run.signal,
    });
    const failed = new Map<string, ErrorInfo>();
    for (const s of sets) for (const f of s.failed) failed.set(f.bundleName, f.error);
    const wanted = (run.bundles ?? chain[chain.length - 1]!.bundles).filter((b) => !failed.has(b));
    const refused: BundleOutcome[] = [...failed].map(([bundleName, error]) => ({ bundleName, state: 'failed', files: 0, bytes: 0, error }));
    if (!wanted.length) {
      throw new SetupError(
        `No bundle of snapshot ${chain[chain.length - 1]!.shortId} could be read back intact: ${[...failed.values()].map((e) => e.message).join('; ')}`,
        'failed',
      );
    }
    const { to, map, bundles: _bundles, ...runOpts } = run;
    const plan = planRestore({ from: sets[sets.length - 1]!.dir, bundles: wanted, ...(to !== undefined ? { to } : {}), ...(map ? { map } : {}) });
    const r = await runRestore(plan, runOpts);
    const bundles = [...r.bundles, ...refused];
    return { ...r, bundles, outcome: runOutcome(bundles, r), repository: repository.name, snapshots: chain };
  });
}
