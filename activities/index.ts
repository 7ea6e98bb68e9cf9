/**
 * The activities of one device's worker. Everything that touches disks, hooks
 * or time lives here; workflows reach it only through `proxyActivities`.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { bundlePaths } from '../common/device.js';
import { ErrorCode, FAILURE_TYPE, codeForSystemError, errorInfo, type ErrorInfo } from '../common/errors.js';
import { bundleWorkflowId, type SessionKind } from '../common/session.js';
import { loadBundle } from './bundleProfile.js';
import { buildCapabilities } from './capabilities.js';
import { handOverFiles, type HandOverResult } from './handOver.js';
import { packBundle } from './packBundle.js';

export interface DeviceConfig {
  /** The device's data root: one folder per bundle (api.md §7). */
  dataRoot: string;
  /** The worker's state folder; capability files for tools are left in its transfer/ area. */
  stateDir: string;
}

/** A failure the workflow maps to a reference code; not retried. */
function codedFailure(code: number, detail: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FAILURE_TYPE, message: errorInfo(code, detail).message, details: [code], nonRetryable: true });
}

export function createActivities(device: DeviceConfig) {
  const packDir = (sessionId: string, bundleName: string) => `${bundlePaths(device.dataRoot, bundleName).backupTemp}/${sessionId}`;

  return {
    async prepareBundle(input: { bundleName: string; kind: SessionKind }): Promise<{ ok: true } | { ok: false; error: ErrorInfo }> {
      const loaded = await loadBundle(device.dataRoot, input.bundleName);
      if (!loaded.ok) return loaded;
      if (!loaded.config.allowToBackupRestore) {
        return { ok: false, error: errorInfo(ErrorCode.BUNDLE_NOT_SUPPORTED, `${input.bundleName}: its profile does not allow backup and restore`) };
      }
      return { ok: true };
    },

    async packBundleData(input: { sessionId: string; bundleName: string }) {
      const ctx = Context.current();
      const loaded = await loadBundle(device.dataRoot, input.bundleName);
      if (!loaded.ok) throw codedFailure(loaded.error.code, loaded.error.message);
      try {
        const summary = await packBundle({
          bundleName: input.bundleName,
          dataDir: bundlePaths(device.dataRoot, input.bundleName).data,
          outDir: packDir(input.sessionId, input.bundleName),
          profile: loaded.config,
          onProgress: (p) => ctx.heartbeat(p),
          signal: ctx.cancellationSignal,
        });
        return { files: summary.files, dirs: summary.dirs, bytes: summary.bytes, skipped: summary.skipped, handOver: summary.handOver + 1 };
      } catch (err) {
        throw asFailure(err, ErrorCode.TAR_FAILED);
      }
    },

    async handOverFiles(input: { sessionId: string; sessionWorkflowId: string; bundleName: string; from: number }): Promise<HandOverResult> {
      const ctx = Context.current();
      return handOverFiles(ctx.client, {
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
        await rm(packDir(input.sessionId, name), { recursive: true, force: true });
      }
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
  };
}

/** Keeps cancellation as it is; turns a system error into its reference code, anything else into `fallback`. */
function asFailure(err: unknown, fallback: number): unknown {
  if (err instanceof ApplicationFailure || Context.current().cancellationSignal.aborted) return err;
  const sys = codeForSystemError(err);
  return codedFailure(sys === ErrorCode.UNKNOWN ? fallback : sys, err instanceof Error ? err.message : String(err));
}
