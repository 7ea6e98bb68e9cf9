/**
 * The activities of one device's worker. Everything that touches disks, hooks
 * or time lives here; workflows reach it only through `proxyActivities`.
 */
import { constants as fsc } from 'node:fs';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { BundleNameSchema, SessionIdSchema, bundlePaths, type HookName } from '../common/device.js';
import { ErrorCode, codeForSystemError, errorInfo, type ErrorInfo } from '../common/errors.js';
import { bundleWorkflowId, type BundleInstall, type SessionKind } from '../common/session.js';
import { codedFailure, isPlainUri } from '../common/rules.js';
import { installBundle, loadBundle } from './bundleProfile.js';
import { applyRestore, RestoreRejected } from './applyRestore.js';
import { createBundleClaimActivities } from './bundleClaims.js';
import { buildCapabilities } from './capabilities.js';
import { handOverFiles, type HandOverResult } from './handOver.js';
import { readManifest } from './manifest.js';
import { packBundle, readManageIndex } from './packBundle.js';
import { oneAttemptAtATime } from './oneAttemptAtATime.js';
import { ProgressReporter } from './progressReporter.js';
import { runHook } from './runHook.js';
import { scanDataSize, type SizeScanItem } from './scanDataSize.js';
import { runScheduledBackup } from './scheduledBackup.js';
import { bundleEventsSignal } from '../common/messages.js';

export interface DeviceConfig {
  /** The device's data root: one folder per bundle (api.md §7). */
  dataRoot: string;
  /** The worker's state folder; capability files for tools are left in its transfer/ area. */
  stateDir: string;
}

/** The new full manifest of an incremental backup, beside the packed files (not itself in the index). */
const MANIFEST_NAME = 'manifest.jsonl';

export type HookResult = { ran: false; output: '' } | { ran: true; output: string; durationMs: number; truncated: boolean };

export function createActivities(device: DeviceConfig) {
  // Folder names from a session ID and a bundle name: checked here too, so a session workflow
  // started by hand (not through the tool library) cannot point an rm or a write outside them.
  const safe = (sessionId: string, bundleName: string) => {
    if (!SessionIdSchema.safeParse(sessionId).success || !BundleNameSchema.safeParse(bundleName).success) {
      throw codedFailure(ErrorCode.INVALID_ARGUMENT, `refused: session "${sessionId.slice(0, 80)}" / bundle "${bundleName.slice(0, 80)}" is not a safe folder name`);
    }
  };
  const packDir = (sessionId: string, bundleName: string) => (safe(sessionId, bundleName), `${bundlePaths(device.dataRoot, bundleName).backupTemp}/${sessionId}`);
  /** Restore: the tool's files for one session, and the tree being built from them. */
  const restoreDir = (sessionId: string, bundleName: string) => (safe(sessionId, bundleName), `${bundlePaths(device.dataRoot, bundleName).restoreTemp}/${sessionId}`);

  return {
    ...createBundleClaimActivities(),

    async prepareBundle(input: { bundleName: string; kind: SessionKind; install?: BundleInstall }): Promise<{ ok: true; hooks: HookName[] } | { ok: false; error: ErrorInfo }> {
      if (input.kind === 'restore' && input.install) await installBundle(device.dataRoot, input.bundleName, input.install);
      const loaded = await loadBundle(device.dataRoot, input.bundleName);
      if (!loaded.ok) return loaded;
      if (!loaded.config.allowToBackupRestore) {
        return { ok: false, error: errorInfo(ErrorCode.BUNDLE_NOT_SUPPORTED, `${input.bundleName}: its profile does not allow backup and restore`) };
      }
      return { ok: true, hooks: Object.keys(loaded.bundle.extension ?? {}) as HookName[] };
    },

    async packBundleData(input: {
      sessionId: string;
      sessionWorkflowId: string;
      bundleName: string;
      kind?: SessionKind;
      baseManifestPath?: string;
      baseTime?: number;
    }) {
      return oneAttemptAtATime(`pack:${input.sessionId}/${input.bundleName}`, async () => {
        const ctx = Context.current();
        const loaded = await loadBundle(device.dataRoot, input.bundleName);
        if (!loaded.ok) throw codedFailure(loaded.error.code, loaded.error.message);
        // Incremental: compare against the previous backup's manifest and write the new full one.
        let base: Awaited<ReturnType<typeof readManifest>>['entries'] | undefined;
        if (input.baseManifestPath) {
          try {
            base = (await readManifest(input.baseManifestPath)).entries;
          } catch (err) {
            throw codedFailure(ErrorCode.INVALID_ARGUMENT, `the previous manifest of ${input.bundleName} is not valid: ${(err as Error).message}`);
          }
        }
        const manifestPath = input.kind === 'incremental' ? `${packDir(input.sessionId, input.bundleName)}/${MANIFEST_NAME}` : undefined;
        const progress = new ProgressReporter(ctx.client, input.sessionWorkflowId, input.bundleName);
        // A retry (say, after the worker was killed) keeps the slices and big files
        // an earlier attempt completed; the first attempt starts clean.
        const resume = ctx.info.attempt > 1;
        progress.start(resume ? 'packing: resuming' : 'packing: 0 files, 0 bytes');
        try {
          const summary = await packBundle({
            bundleName: input.bundleName,
            dataDir: bundlePaths(device.dataRoot, input.bundleName).data,
            outDir: packDir(input.sessionId, input.bundleName),
            profile: loaded.config,
            resume,
            base,
            baseTime: input.baseTime,
            manifestPath,
            // The heartbeat carries the durable point: { files, bytes, phase, durable }.
            onProgress: (p) => {
              ctx.heartbeat(p);
              progress.update(
                p.phase === 'verify'
                  ? `packing: resuming, ${p.durable} packed files checked`
                  : `packing: ${p.files} files, ${p.bytes} bytes${p.phase === 'scan' ? ' (resuming)' : ''}`,
              );
            },
            signal: ctx.cancellationSignal,
          });
          if (summary.resumed) ctx.log.info('packBundleData resumed', { attempt: ctx.info.attempt, ...summary.resumed });
          return {
            files: summary.files,
            dirs: summary.dirs,
            bytes: summary.bytes,
            skipped: summary.skipped,
            handOver: summary.handOver + 1,
            changed: summary.changed,
            unchanged: summary.unchanged,
            deleted: summary.deleted,
          };
        } catch (err) {
          throw asFailure(err, ErrorCode.TAR_FAILED);
        } finally {
          progress.stop();
        }
      });
    },

    /**
     * Runs one of the bundle's hooks, if it declares it. A hook that fails or
     * outlives `timeoutMs` fails the activity with its reference code.
     */
    async runBundleHook(input: { sessionWorkflowId?: string; bundleName: string; hook: HookName; input?: string; parameters?: string; timeoutMs: number }): Promise<HookResult> {
      const ctx = Context.current();
      const loaded = await loadBundle(device.dataRoot, input.bundleName);
      const command = loaded.ok ? loaded.bundle.extension?.[input.hook] : undefined;
      if (!command) return { ran: false, output: '' };
      const progress = input.sessionWorkflowId ? new ProgressReporter(ctx.client, input.sessionWorkflowId, input.bundleName) : undefined;
      progress?.start(`hook ${input.hook} running`);
      try {
        const run = await runHook({
          hook: input.hook,
          command,
          bundleName: input.bundleName,
          bundleRoot: bundlePaths(device.dataRoot, input.bundleName).root,
          input: input.input,
          parameters: input.parameters,
          timeoutMs: input.timeoutMs,
          signal: ctx.cancellationSignal,
          onTick: () => ctx.heartbeat(),
        });
        if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
        if (run.timedOut) throw codedFailure(ErrorCode.TIMED_OUT, `hook ${input.hook} of ${input.bundleName} ran past ${input.timeoutMs} ms`);
        if (run.exitCode !== 0) {
          // The reference's code for an extension that failed or crashed (onBundleEnd: 13500004 "Application extension death").
          const why = run.signal ? `was killed by ${run.signal}` : `exited with ${run.exitCode}`;
          const said = run.stderr.slice(-500).trim();
          throw codedFailure(ErrorCode.EXTENSION_DIED, `hook ${input.hook} of ${input.bundleName} ${why}${said ? `: ${said}` : ' (nothing on stderr)'}`);
        }
        return { ran: true, output: run.stdout.trim(), durationMs: run.durationMs, truncated: run.truncated };
      } catch (err) {
        if (err instanceof ApplicationFailure || ctx.cancellationSignal.aborted) throw err;
        throw codedFailure(ErrorCode.EXTENSION_START_FAILED, `hook ${input.hook} of ${input.bundleName} could not start: ${(err as Error).message}`);
      } finally {
        progress?.stop();
      }
    },

    /** getBackupDataSize: scans the listed bundles, reporting to the session every 5 s and at the end. */
    async scanBackupSize(input: { sessionWorkflowId: string; precise: boolean; dataList: SizeScanItem[] }): Promise<void> {
      const ctx = Context.current();
      const session = ctx.client.workflow.getHandle(input.sessionWorkflowId);
      // A retry resumes after the bundles an earlier attempt reported (as far as its last heartbeat says).
      let reported = (ctx.info.heartbeatDetails as { reported?: number } | undefined)?.reported ?? 0;
      await scanDataSize(device.dataRoot, input.precise, input.dataList, (report) => session.signal(bundleEventsSignal, [{ type: 'sizeReport', report }]), {
        signal: ctx.cancellationSignal,
        onTick: () => ctx.heartbeat({ reported }),
        from: reported,
        onReported: (n) => ctx.heartbeat({ reported: (reported = n) }),
      });
    },

    /** cleanBundleTempDir: empties the bundle's backup/backup and backup/restore folders. */
    async cleanBundleTempDir(input: { bundleName: string }): Promise<boolean> {
      if (!BundleNameSchema.safeParse(input.bundleName).success) return false;
      const paths = bundlePaths(device.dataRoot, input.bundleName);
      const loaded = await loadBundle(device.dataRoot, input.bundleName);
      if (!loaded.ok) return false;
      for (const dir of [paths.backupTemp, paths.restoreTemp]) {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true, mode: 0o700 });
      }
      return true;
    },

    async handOverFiles(input: { sessionId: string; sessionWorkflowId: string; bundleName: string; from: number; kind?: SessionKind; sendRate?: number }): Promise<HandOverResult> {
      const ctx = Context.current();
      return handOverFiles(ctx.client, {
        // A retry may start long after it was scheduled: it asks the bundle for its rate instead.
        sendRate: ctx.info.attempt === 1 ? input.sendRate : undefined,
        manifestPath: input.kind === 'incremental' ? `${packDir(input.sessionId, input.bundleName)}/${MANIFEST_NAME}` : undefined,
        sessionWorkflowId: input.sessionWorkflowId,
        bundleWorkflowId: bundleWorkflowId(input.sessionId, input.bundleName),
        bundleName: input.bundleName,
        packDir: packDir(input.sessionId, input.bundleName),
        from: input.from,
      });
    },

    async cleanBundleSession(input: { sessionId: string; bundleName: string }): Promise<void> {
      await rm(packDir(input.sessionId, input.bundleName), { recursive: true, force: true });
    },

    async cleanSessionTemp(input: { sessionId: string; bundleNames: string[] }): Promise<void> {
      for (const name of input.bundleNames) {
        if (!BundleNameSchema.safeParse(name).success) continue;
        await rm(packDir(input.sessionId, name), { recursive: true, force: true });
        await rm(restoreDir(input.sessionId, name), { recursive: true, force: true });
      }
    },

    /**
     * Restore: creates the empty target for one file the tool will write,
     * private (0600) and never through a link. The session asks once per uri,
     * so an existing file here is this activity's own earlier attempt: it is
     * emptied and reused, which keeps a retry after a worker death harmless.
     */
    async createRestoreTarget(input: { sessionId: string; bundleName: string; uri: string }): Promise<{ ok: true; path: string } | { ok: false; error: ErrorInfo }> {
      if (!isPlainUri(input.uri)) {
        return { ok: false, error: errorInfo(ErrorCode.INVALID_ARGUMENT, `uri "${input.uri}" is not a plain file name`) };
      }
      const dir = `${restoreDir(input.sessionId, input.bundleName)}/files`;
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const path = `${dir}/${input.uri}`;
      try {
        const fh = await open(path, fsc.O_CREAT | fsc.O_TRUNC | fsc.O_WRONLY | fsc.O_NOFOLLOW, 0o600);
        await fh.close();
        return { ok: true, path };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code === 'ELOOP' ? ErrorCode.INVALID_ARGUMENT : codeForSystemError(err);
        return { ok: false, error: errorInfo(code, `${input.uri}: ${(err as Error).message}`) };
      }
    },

    /** Restore: verifies the tool's files against their index, unpacks them safely and applies them (api.md §9). */
    async applyRestoreData(input: { sessionId: string; sessionWorkflowId: string; bundleName: string }) {
      return oneAttemptAtATime(`apply:${input.sessionId}/${input.bundleName}`, async () => {
        const ctx = Context.current();
        const loaded = await loadBundle(device.dataRoot, input.bundleName);
        if (!loaded.ok) throw codedFailure(loaded.error.code, loaded.error.message);
        const paths = bundlePaths(device.dataRoot, input.bundleName);
        const work = restoreDir(input.sessionId, input.bundleName);
        const progress = new ProgressReporter(ctx.client, input.sessionWorkflowId, input.bundleName);
        progress.start('verifying: 0 files, 0 bytes');
        try {
          // An increment (its index lists deletions) is merged into the current data; a full set replaces it.
          const increment = await readManageIndex(`${work}/files/manage.json`).then(
            (index) => index.incremental !== undefined,
            () => false, // applyRestore reports the invalid index itself
          );
          const tempOnly = loaded.config.fullBackupOnly && !increment;
          return await applyRestore({
            bundleName: input.bundleName,
            restoreDir: `${work}/files`,
            dataDir: paths.data,
            // fullBackupOnly: the verified tree stays in the temp area, outside the session's folder so release keeps it.
            stagingDir: tempOnly ? `${paths.restoreTemp}/restored-${input.sessionId}` : `${work}/staging`,
            mode: increment ? 'merge' : tempOnly ? 'tempOnly' : 'apply',
            signal: ctx.cancellationSignal,
            onProgress: (p) => {
              ctx.heartbeat(p);
              progress.update(`restoring: ${p.files} files, ${p.bytes} bytes`);
            },
          });
        } catch (err) {
          if (err instanceof RestoreRejected) {
            ctx.metricMeter.createCounter('ohbackup_restore_verification_failures', 'bundles', 'restores refused by verification').add(1);
            throw codedFailure(err.code, err.message);
          }
          throw asFailure(err, ErrorCode.UNTAR_FAILED);
        } finally {
          progress.stop();
        }
      });
    },

    async cleanRestoreSession(input: { sessionId: string; bundleName: string }): Promise<void> {
      await rm(restoreDir(input.sessionId, input.bundleName), { recursive: true, force: true });
    },

    /** Writes the capability file where the tool can open it; the tool unlinks it once it holds an fd. */
    async writeCapabilities(input: { only?: Array<{ bundleName: string; lastIncrementalTime: number }> }): Promise<string> {
      const caps = await buildCapabilities(device.dataRoot, input.only);
      const dir = `${device.stateDir}/transfer`;
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const path = `${dir}/capabilities-${randomUUID()}.json`;
      await writeFile(path, JSON.stringify(caps, null, 2), { mode: 0o600 });
      return path;
    },

    /** One run of an `ohbackup schedule`: plays the tool's part of a backup session into a new set (scheduledBackup.ts). */
    runScheduledBackup,
  };
}

/** Keeps cancellation as it is; turns a system error into its reference code, anything else into `fallback`. */
function asFailure(err: unknown, fallback: number): unknown {
  if (err instanceof ApplicationFailure || Context.current().cancellationSignal.aborted) return err;
  const sys = codeForSystemError(err);
  return codedFailure(sys === ErrorCode.UNKNOWN ? fallback : sys, err instanceof Error ? err.message : String(err));
}
