/**
 * The whole of a device-side run (common/deviceRun.ts), on the device's own
 * worker: the repository named by its alias in this worker's environment
 * (config/repository.ts), then the same library calls as a local run
 * (`backupToRepository`, `restoreFromRepository`, the repository's
 * snapshots/check/forget/diff), on
 * the activity's own Temporal client and task queue. Progress goes into the
 * heartbeat details, which the operator's command reads.
 *
 * A retry (the worker died mid-run) releases the session of the attempt
 * before it, named in its last heartbeat, and waits for it to end, so its
 * bundle claims do not refuse the new session (13500013), and runs again: restic never leaves half a
 * snapshot, and a snapshot the earlier attempt finished is found by its
 * session and reported instead of being made twice. A restore retried after
 * the earlier attempt began writing replaces what that attempt wrote.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import {
  DEVICE_QUERY_KINDS,
  DEVICE_RUN_SETUP,
  MAX_PROGRESS_BUNDLES,
  type DeviceQueryKind,
  type DeviceRunBundle,
  type DeviceRunProgress,
  type DeviceRunRequest,
  type DeviceRunResult,
  type DeviceRunSnapshot,
} from '../common/deviceRun.js';
import { releaseUpdate } from '../common/messages.js';
import type { BundleOutcome } from '../common/session.js';
import { resolveDeviceAlias } from '../config/repository.js';
import { ChainBroken, NoPassword, Repository, RepositoryError, SetMismatch, SnapshotNotFound, type SnapshotInfo } from '../engine/repository/index.js';
import { backupToRepository, restoreFromRepository } from '../client/runs/repositoryRuns.js';
import type { BackupProgressEvent } from '../client/runs/runBackup.js';
import type { RestoreProgressEvent } from '../client/runs/runRestore.js';
import { SetupError } from '../client/runs/setup.js';
import type { RunSummary } from '../client/runs/tally.js';
import type { DeviceConfig } from './deviceConfig.js';

const setupFailure = (message: string) => ApplicationFailure.nonRetryable(message, DEVICE_RUN_SETUP);
/** How long a retry waits for the earlier attempt's released session to end (its claims given back) before it starts its own. */
const EARLIER_SESSION_END_MS = 30_000;

export function snapshotView(s: SnapshotInfo): DeviceRunSnapshot {
  const { tags: _tags, ...view } = s;
  return view;
}

/** The run's progress, kept small, heartbeated at most once a second and at every phase change. */
class Progress {
  readonly state: DeviceRunProgress = { phase: 'starting', bundles: [], files: 0, bytes: 0 };
  private readonly byName = new Map<string, DeviceRunBundle>();

  bundle(name: string): DeviceRunBundle {
    let b = this.byName.get(name);
    if (!b) {
      b = { name, state: 'pending', files: 0, bytes: 0 };
      this.byName.set(name, b);
      if (this.state.bundles.length < MAX_PROGRESS_BUNDLES) this.state.bundles.push(b);
    }
    return b;
  }

  total(): void {
    let files = 0;
    let bytes = 0;
    for (const b of this.byName.values()) {
      files += b.files;
      bytes += b.bytes;
    }
    this.state.files = files;
    this.state.bytes = bytes;
  }

  onEvent(e: BackupProgressEvent | RestoreProgressEvent): boolean {
    if (e.type === 'start') {
      this.state.sessionId = e.sessionId;
      this.state.phase = 'session';
      for (const n of e.bundles) this.bundle(n);
      return true;
    }
    if (e.type === 'begin') {
      const b = this.bundle(e.bundleName);
      b.state = 'running';
      const total = 'total' in e ? e.total : e.estimatedBytes;
      if (total !== undefined) b.total = total;
      return true;
    }
    if (e.type === 'file') {
      const b = this.bundle(e.bundleName);
      b.files = e.files;
      if ('bytes' in e) b.bytes = e.bytes;
      this.total();
      return false;
    }
    if (e.type === 'end') this.end(e.outcome);
    return e.type === 'end';
  }

  end(o: BundleOutcome): void {
    const b = this.bundle(o.bundleName);
    b.state = o.state;
    b.files = o.files;
    b.bytes = o.bytes;
    if (o.error) b.code = o.error.code;
    this.total();
  }
}

function isQuery(kind: DeviceRunRequest['kind']): kind is DeviceQueryKind {
  return (DEVICE_QUERY_KINDS as readonly string[]).includes(kind);
}

/** A repository command answered here (`--on-device`): the library's own result, as a local command gets it. */
async function answerQuery(repository: Repository, req: DeviceRunRequest, signal: AbortSignal): Promise<Pick<DeviceRunResult, 'answer' | 'summary'>> {
  const name = repository.name;
  if (req.kind === 'snapshots') {
    const list = await repository.snapshots({ device: req.fromDevice, bundle: req.bundle, signal });
    return { answer: list, summary: { text: `${list.length} snapshots`, ok: true } };
  }
  if (req.kind === 'check') {
    const c = await repository.check({ readData: !!req.readData, readDataSubset: req.readDataSubset, signal });
    // A damaged repository is this run's answer, not its failure: the command says so with exit 1.
    const text = c.ok ? 'repository clean' : `repository damaged (${c.damaged.length} bundles, ${c.restic.errors} restic errors)`;
    return { answer: { repository: name, ...c }, summary: { text, ok: c.ok } };
  }
  if (req.kind === 'forget') {
    if (!req.keep || !Object.keys(req.keep).length) throw setupFailure(`device ${req.device}: forget needs a keep policy`);
    const f = await repository.forget(req.keep, { device: req.fromDevice, prune: req.prune, dryRun: req.dryRun, signal });
    return { answer: { repository: name, ...f }, summary: { text: `${f.dryRun ? 'would forget' : 'forgot'} ${f.forgotten.length} snapshots`, ok: true } };
  }
  if (!req.a || !req.b) throw setupFailure(`device ${req.device}: diff needs two snapshots`);
  const d = await repository.diff(req.a, req.b, { signal });
  return { answer: d, summary: { text: `${d.bundles.length} bundles compared`, ok: true } };
}

export function createDeviceRunActivities(config: DeviceConfig) {
  return {
    /** A device-side run: the tool's part of a backup, a restore, or a repository listing (deviceRunWorkflow). */
    async runDeviceRun(req: DeviceRunRequest): Promise<DeviceRunResult> {
      const ctx = Context.current();
      const attempt = ctx.info.attempt;
      const earlier = attempt > 1 ? (ctx.info.heartbeatDetails as DeviceRunProgress | undefined) : undefined;
      const progress = new Progress();
      const beat = () => ctx.heartbeat(progress.state);
      beat();
      const timer = setInterval(beat, 1000);
      // One folder per run in the worker's state folder (the worker's filesystem: big files are linked, not copied); a retry starts it afresh.
      const tempDir = path.join(config.stateDir, 'runs', (ctx.info.workflowExecution?.workflowId ?? ctx.info.activityId).replace(/[^A-Za-z0-9._-]/g, '_'));
      try {
        let alias;
        try {
          alias = resolveDeviceAlias(req.repository);
        } catch (err) {
          throw setupFailure(`device ${req.device}: ${(err as Error).message}`);
        }
        const repository = await Repository.open({ repository: alias.repository, passwordFile: alias.passwordFile, tempDir }).catch((err: unknown) => {
          // A repository that is not there or does not open is a setup failure; anything else (the network) is retried.
          if (err instanceof RepositoryError && err.exitCode !== undefined && [10, 12].includes(err.exitCode))
            throw setupFailure(`device ${req.device}: repository "${req.repository}": ${(err as Error).message}`);
          throw err;
        });
        const common = { kind: req.kind, device: req.device, repository: req.repository, attempt };
        if (isQuery(req.kind)) {
          progress.state.phase = 'query';
          beat();
          return { ...common, outcome: 'done', bundles: [], files: 0, bytes: 0, ...(await answerQuery(repository, req, ctx.cancellationSignal)) };
        }
        if (earlier?.sessionId) {
          const session = ctx.client.workflow.getHandle(earlier.sessionId);
          await session.executeUpdate(releaseUpdate, { args: [{}] }).catch(() => undefined);
          // The session gives its bundles' claims back in its last activities, after the update has returned: until it
          // has ended, this attempt's own session would meet them (13500013). Bounded: a session that cannot end is the claims' timeout's.
          let bound: NodeJS.Timeout | undefined;
          await Promise.race([session.result().catch(() => undefined), new Promise((r) => (bound = setTimeout(r, EARLIER_SESSION_END_MS)))]);
          clearTimeout(bound);
          if (req.kind === 'backup') {
            // The earlier attempt may have stored its snapshot before its worker died.
            const made = (await repository.snapshots({ device: req.device })).find((s) => s.sessionId === earlier.sessionId);
            if (made) {
              const bundles = earlier.bundles.map(
                (b) => ({ bundleName: b.name, state: made.bundles.includes(b.name) ? 'done' : 'failed', files: b.files, bytes: b.bytes }) as BundleOutcome,
              );
              return {
                ...common,
                outcome: made.partial ? 'partial' : 'done',
                sessionId: made.sessionId,
                bundles,
                files: earlier.files,
                bytes: earlier.bytes,
                snapshot: snapshotView(made),
              };
            }
          }
        }
        await rm(tempDir, { recursive: true, force: true });
        await mkdir(tempDir, { recursive: true, mode: 0o700 });
        /** What a backup's or restore's run came to (a cancelled one ends the activity as cancelled: the session is released by now). */
        const ended = (r: RunSummary & { sessionId: string }) => {
          if (r.interrupted && ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
          for (const o of r.bundles) progress.end(o);
          return {
            ...common,
            outcome: r.outcome === 'interrupted' ? ('failed' as const) : r.outcome,
            sessionId: r.sessionId,
            bundles: r.bundles,
            files: progress.state.files,
            bytes: progress.state.bytes,
            ...(r.error ? { error: r.error } : {}),
          };
        };
        const run = {
          client: ctx.client,
          taskQueue: ctx.info.taskQueue,
          signal: ctx.cancellationSignal,
          tempDir,
          onProgress: (e: BackupProgressEvent | RestoreProgressEvent) => {
            if (e.type === 'start' && req.kind === 'restore') progress.state.wrote = true;
            if (e.type === 'notice') ctx.log.info(e.message);
            if (progress.onEvent(e)) beat();
          },
        };
        if (req.kind === 'backup') {
          const r = await backupToRepository({
            ...run,
            repository,
            device: req.device,
            bundles: req.bundles,
            rate: req.rate,
            incremental: req.incremental,
            base: req.base,
            onStoreProgress: (p) => {
              progress.state.phase = 'storing';
              progress.state.percent = Math.round(p.percent * 1000) / 10;
            },
          });
          return {
            ...ended(r),
            ...(r.snapshot ? { snapshot: snapshotView(r.snapshot) } : {}),
            ...(r.baseSnapshot ? { baseSnapshot: snapshotView(r.baseSnapshot) } : {}),
            ...(r.store
              ? { store: { filesNew: r.store.filesNew, filesChanged: r.store.filesChanged, dataAdded: r.store.dataAdded, totalBytes: r.store.bytesProcessed } }
              : {}),
          };
        }
        progress.state.phase = 'reading';
        beat();
        const r = await restoreFromRepository({
          ...run,
          repository,
          snapshot: req.snapshot ?? 'latest',
          // A snapshot named by ID may be any device's (a restore onto another device); `latest` is the device's own unless told.
          ...(req.fromDevice || !req.snapshot || req.snapshot === 'latest' ? { device: req.fromDevice ?? req.device } : {}),
          to: config.dataRoot,
          ...(req.bundles?.length ? { bundles: req.bundles } : {}),
          ...(req.map ? { map: req.map } : {}),
          // What an earlier attempt began writing is this run's own: replacing it is the retry.
          force: req.force || !!earlier?.wrote,
          keepPrevious: req.keepPrevious,
        });
        return { ...ended(r), snapshots: r.snapshots.map(snapshotView) };
      } catch (err) {
        // Refused before anything ran (nothing to back up, data there now without force, no such snapshot): retrying changes nothing.
        const refused =
          [SetupError, SnapshotNotFound, ChainBroken, NoPassword, SetMismatch, TypeError].some((c) => err instanceof c) ||
          // A query the repository answered with a refusal (two devices' snapshots to diff …), not restic failing.
          (isQuery(req.kind) && err instanceof RepositoryError && err.exitCode === undefined);
        if (refused && !ctx.cancellationSignal.aborted) throw setupFailure(`device ${req.device}: ${(err as Error).message}`);
        throw err;
      } finally {
        clearInterval(timer);
        await rm(tempDir, { recursive: true, force: true }).catch(() => undefined);
      }
    },
  };
}
