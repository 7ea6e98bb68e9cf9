/**
 * The tool's part of a scheduled backup, run by the device's worker: the same
 * `runBackup` as `ohbackup backup` (session, set writer, release), on the
 * activity's own Temporal client, into a new set in the destination. With
 * `incremental`, the newest complete incremental set there is the base, so
 * the runs form a chain that `ohbackup restore --from` the newest follows.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ScheduledBackupRequest, ScheduledBackupSummary } from '../common/scheduledBackup.js';
import type { BundleOutcome } from '../common/session.js';
import { runOutcome } from '../common/rules.js';
import { SET_SUMMARY, readSetInfo, type BackupSetSummary } from '../client/sets/layout.js';
import { runBackup, type BackupProgressEvent } from '../client/runs/runBackup.js';
import { SetupError, sessionUiUrl } from '../client/runs/setup.js';
import { releaseUpdate } from '../common/messages.js';
import { readSettings } from '../config/env.js';
import { DEFAULT_SNAPSHOT_DEVICE, resolveRepositorySpec } from '../config/repository.js';
import { backupToRepository, openRepositorySpec } from '../client/runs/repositoryRuns.js';
import type { Repository } from '../engine/repository/index.js';
import { activityTags, metrics } from './metrics.js';

/** What an attempt records in its heartbeat, for a retry to clean up after it. */
interface AttemptDetails {
  sessionId?: string;
}

export async function runScheduledBackup(input: ScheduledBackupRequest & { setName: string }): Promise<ScheduledBackupSummary> {
  if (input.repository !== undefined) return runScheduledToRepository(input);
  const ctx = Context.current();
  if (!input.dest) throw ApplicationFailure.nonRetryable('a scheduled backup needs a destination folder or a repository', 'OhbackupScheduledBackupSetup');
  const dest = path.resolve(input.dest);
  const out = path.join(dest, input.setName);
  try {
    await mkdir(dest, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`the destination ${dest} cannot be created: ${(err as Error).message}`, 'OhbackupScheduledBackupSetup');
  }

  if (ctx.info.attempt > 1) {
    // An earlier attempt of this run (its worker died, say) may have finished the set; else its session is released and its set made again.
    const finished = await completeSet(out);
    if (finished) return finished;
    const earlier = ctx.info.heartbeatDetails as AttemptDetails | undefined;
    if (earlier?.sessionId)
      await ctx.client.workflow
        .getHandle(earlier.sessionId)
        .executeUpdate(releaseUpdate, { args: [{}] })
        .catch(() => undefined);
    await rm(out, { recursive: true, force: true });
  }

  const base = input.incremental ? await newestBase(dest, input.setName) : undefined;
  const details: AttemptDetails = {};
  const beat = setInterval(() => ctx.heartbeat(details), 1000);
  try {
    const result = await runBackup({
      out,
      ...runOptions(input, details),
      base,
    });
    if (result.interrupted && ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
    return summarize({
      set: out,
      sessionId: result.sessionId,
      uiUrl: result.uiUrl,
      kind: result.kind,
      base: result.base,
      bundles: result.bundles,
      error: result.error,
    });
  } catch (err) {
    // Nothing to retry when the device has nothing to back up (or the like).
    if (err instanceof SetupError) throw ApplicationFailure.nonRetryable(err.message, 'OhbackupScheduledBackupSetup');
    throw err;
  } finally {
    clearInterval(beat);
  }
}

/** What both kinds of run pass to the backup: the request's settings, the activity's client, and a heartbeat naming the session. */
function runOptions(input: ScheduledBackupRequest, details: AttemptDetails) {
  const ctx = Context.current();
  return {
    bundles: input.bundles,
    rate: input.rate,
    bundleTimeoutMs: input.bundleTimeoutMs,
    incremental: input.incremental,
    client: ctx.client,
    taskQueue: ctx.info.taskQueue,
    signal: ctx.cancellationSignal,
    onProgress: (e: BackupProgressEvent) => {
      if (e.type === 'start') {
        details.sessionId = e.sessionId;
        ctx.heartbeat(details);
      } else if (e.type === 'notice') ctx.log.info(e.message);
    },
  };
}

/** Releases the session an earlier attempt of this run started (its worker died, say): the run starts a new one. */
async function releaseEarlier(): Promise<void> {
  const ctx = Context.current();
  const earlier = ctx.info.attempt > 1 ? (ctx.info.heartbeatDetails as AttemptDetails | undefined) : undefined;
  if (earlier?.sessionId)
    await ctx.client.workflow
      .getHandle(earlier.sessionId)
      .executeUpdate(releaseUpdate, { args: [{ by: 'another client' }] })
      .catch(() => undefined);
}

/**
 * A run into a repository, named as this worker resolves it (its own
 * environment holds any password): one snapshot, an increment of the
 * device's newest incremental snapshot unless that chain has `fullEvery`
 * increments already; then the keep policy, pruning at most once a day.
 */
async function runScheduledToRepository(input: ScheduledBackupRequest & { setName: string }): Promise<ScheduledBackupSummary> {
  const ctx = Context.current();
  const settings = readSettings();
  const device = settings.device ?? DEFAULT_SNAPSHOT_DEVICE;
  let repository: Repository;
  try {
    repository = await openRepositorySpec(resolveRepositorySpec(input.repository, { stateDir: settings.stateDir }));
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`the repository cannot be opened: ${(err as Error).message}`, 'OhbackupScheduledBackupSetup');
  }
  await releaseEarlier();
  const base = input.incremental ? await newestBaseSnapshot(repository, device, input.fullEvery) : undefined;
  const details: AttemptDetails = {};
  const beat = setInterval(() => ctx.heartbeat(details), 1000);
  try {
    const r = await backupToRepository({
      repository,
      device,
      ...runOptions(input, details),
      base,
    });
    if (r.interrupted && ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
    if (r.store) metrics().repositoryBytesAdded.add(r.store.dataAdded, { ...activityTags(ctx.info), repository: repository.name });
    const repo: NonNullable<ScheduledBackupSummary['repository']> = {
      name: repository.name,
      ...(r.snapshot ? { snapshot: r.snapshot.id } : {}),
      ...(r.baseSnapshot ? { baseSnapshot: r.baseSnapshot.id } : {}),
      ...(r.store ? { bytesProcessed: r.store.bytesProcessed, dataAdded: r.store.dataAdded } : {}),
      ...(r.error && !r.snapshot ? { problem: r.error.message } : {}),
    };
    if (r.snapshot && input.keep) {
      try {
        const prune = await pruneDue(settings.stateDir, repository.name);
        const f = await repository.forget(input.keep, { device, prune, signal: ctx.cancellationSignal });
        repo.forgotten = f.forgotten;
        repo.pruned = f.pruned;
        if (f.pruned) await markPruned(settings.stateDir, repository.name);
      } catch (err) {
        repo.problem = `the keep policy failed: ${(err as Error).message}`;
        ctx.log.warn(repo.problem);
      }
    }
    return {
      ...summarize({
        set: r.snapshot ? `${repository.name}#${r.snapshot.id}` : repository.name,
        sessionId: r.sessionId,
        uiUrl: r.uiUrl,
        kind: r.kind,
        base: r.baseSnapshot?.id,
        bundles: r.bundles,
        error: r.error,
      }),
      repository: repo,
    };
  } catch (err) {
    if (err instanceof SetupError) throw ApplicationFailure.nonRetryable(err.message, 'OhbackupScheduledBackupSetup');
    throw err;
  } finally {
    clearInterval(beat);
  }
}

/** The snapshot a new increment chains to: the device's newest that keeps manifests, unless its chain is `fullEvery` increments long. */
async function newestBaseSnapshot(repository: Repository, device: string, fullEvery: number | undefined): Promise<string | undefined> {
  const newest = (await repository.snapshots({ device })).filter((s) => s.kind === 'incremental').pop();
  if (!newest) return undefined;
  if (fullEvery !== undefined && (await repository.chain(newest.id)).length - 1 >= fullEvery) return undefined;
  return newest.id;
}

const PRUNE_EVERY_MS = 24 * 60 * 60 * 1000;
const pruneStamp = (stateDir: string, name: string) => path.join(stateDir, `repository-pruned-${createHash('sha256').update(name).digest('hex').slice(0, 16)}`);

/** Whether this worker last pruned the repository a day ago or more (prune rewrites packs: not after every run). */
async function pruneDue(stateDir: string, name: string): Promise<boolean> {
  const st = await stat(pruneStamp(stateDir, name)).catch(() => undefined);
  return !st || Date.now() - st.mtimeMs >= PRUNE_EVERY_MS;
}

async function markPruned(stateDir: string, name: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(pruneStamp(stateDir, name), new Date().toISOString(), { mode: 0o600 });
}

/** The run's summary; its elapsed time is this attempt's (the one that ran the backup). */
function summarize({ base, error, ...s }: Omit<ScheduledBackupSummary, 'files' | 'bytes' | 'outcome'>): ScheduledBackupSummary {
  const outcome = runOutcome(s.bundles, { error }) as ScheduledBackupSummary['outcome'];
  const files = s.bundles.reduce((n, b) => n + b.files, 0);
  const bytes = s.bundles.reduce((n, b) => n + b.bytes, 0);
  const elapsedMs = Date.now() - Context.current().info.currentAttemptScheduledTimestampMs;
  return { ...s, ...(base ? { base } : {}), files, bytes, elapsedMs, outcome, ...(error ? { error } : {}) };
}

/** The summary of `out` when an earlier attempt wrote it with every bundle done; else undefined. */
async function completeSet(out: string): Promise<ScheduledBackupSummary | undefined> {
  let summary: BackupSetSummary;
  try {
    summary = JSON.parse(await readFile(path.join(out, SET_SUMMARY), 'utf8')) as BackupSetSummary;
  } catch {
    return undefined;
  }
  const bundles: BundleOutcome[] = Array.isArray(summary.bundles) ? summary.bundles : [];
  if (!bundles.length || bundles.some((b) => b.state !== 'done')) return undefined;
  const namespace = Context.current().info.namespace;
  // An earlier attempt wrote the set: how long that took is not known.
  const { elapsedMs: _unknown, ...done } = summarize({
    set: out,
    sessionId: summary.sessionId,
    uiUrl: sessionUiUrl(namespace, summary.sessionId),
    kind: summary.kind,
    base: summary.base,
    bundles,
  });
  return done;
}

/**
 * The newest set in `dest` an increment can chain to: an incremental set
 * whose summary is written (so it is complete) and that holds at least one
 * bundle; newest by its time, then by folder name.
 */
async function newestBase(dest: string, exclude: string): Promise<string | undefined> {
  let best: { dir: string; time: number; name: string } | undefined;
  for (const entry of await readdir(dest, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === exclude) continue;
    let info: ReturnType<typeof readSetInfo>;
    try {
      info = readSetInfo(path.join(dest, entry.name));
    } catch {
      continue; // not a set, or one still being written
    }
    if (info.kind !== 'incremental' || info.time === undefined || info.done.length === 0) continue;
    if (!best || info.time > best.time || (info.time === best.time && entry.name > best.name)) best = { dir: info.dir, time: info.time, name: entry.name };
  }
  return best?.dir;
}
