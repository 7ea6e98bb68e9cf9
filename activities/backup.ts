/** The backup activities: packing a bundle (engine/pack), handing its files over, and cleaning up after. */
import { rm } from 'node:fs/promises';
import { Context } from '@temporalio/activity';
import { ErrorCode } from '../common/errors.js';
import { codedFailure } from '../common/rules.js';
import { bundleWorkflowId, type SessionKind } from '../common/session.js';
import { MANIFEST_NAME, type Device } from '../engine/device.js';
import { BaseManifestInvalid, runOffThread } from '../engine/offThread.js';
import { asFailure, sessionBundle } from './failures.js';
import { handOverFiles, type HandOverResult } from './handOver.js';
import { oneAttemptAtATime } from './oneAttemptAtATime.js';
import { ProgressReporter } from './progressReporter.js';

export function createBackupActivities(device: Device) {
  return {
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
        const bundle = device.bundle(input.bundleName);
        const loaded = await bundle.profile();
        if (!loaded.ok) throw codedFailure(loaded.error.code, loaded.error.message);
        const packDir = sessionBundle(device, input.sessionId, input.bundleName).packDir(input.sessionId);
        const manifestPath = input.kind === 'incremental' ? `${packDir}/${MANIFEST_NAME}` : undefined;
        const progress = new ProgressReporter(ctx.client, input.sessionWorkflowId, input.bundleName);
        // A retry (say, after the worker was killed) keeps the slices and big files
        // an earlier attempt completed; the first attempt starts clean.
        const resume = ctx.info.attempt > 1;
        progress.start(resume ? 'packing: resuming' : 'packing: 0 files, 0 bytes');
        try {
          // On a thread of the engine's pool: hashing and slice writing on another core.
          const summary = await runOffThread(
            'pack',
            {
              bundleName: input.bundleName,
              dataDir: bundle.paths.data,
              outDir: packDir,
              profile: loaded.config,
              resume,
              // Incremental: compared against the previous backup's manifest (read there), the new full one written.
              ...(input.baseManifestPath ? { baseManifestPath: input.baseManifestPath } : {}),
              baseTime: input.baseTime,
              manifestPath,
            },
            {
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
            },
          );
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
          if (err instanceof BaseManifestInvalid) {
            throw codedFailure(ErrorCode.INVALID_ARGUMENT, `the previous manifest of ${input.bundleName} is not valid: ${err.message}`);
          }
          throw asFailure(err, ErrorCode.TAR_FAILED);
        } finally {
          progress.stop();
        }
      });
    },

    async handOverFiles(input: {
      sessionId: string;
      sessionWorkflowId: string;
      bundleName: string;
      from: number;
      kind?: SessionKind;
      sendRate?: number;
    }): Promise<HandOverResult> {
      const ctx = Context.current();
      const packDir = sessionBundle(device, input.sessionId, input.bundleName).packDir(input.sessionId);
      return handOverFiles(ctx.client, {
        // A retry may start long after it was scheduled: it asks the bundle for its rate instead.
        sendRate: ctx.info.attempt === 1 ? input.sendRate : undefined,
        manifestPath: input.kind === 'incremental' ? `${packDir}/${MANIFEST_NAME}` : undefined,
        sessionWorkflowId: input.sessionWorkflowId,
        bundleWorkflowId: bundleWorkflowId(input.sessionId, input.bundleName),
        bundleName: input.bundleName,
        packDir,
        from: input.from,
      });
    },

    async cleanBundleSession(input: { sessionId: string; bundleName: string }): Promise<void> {
      await rm(sessionBundle(device, input.sessionId, input.bundleName).packDir(input.sessionId), { recursive: true, force: true });
    },
  };
}
