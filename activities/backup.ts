/** The backup activities: packing a bundle (engine/pack), handing its files over, and cleaning up after. */
import { rm } from 'node:fs/promises';
import { Context } from '@temporalio/activity';
import { ErrorCode } from '../common/errors.js';
import { bundleEventsSignal, toolBegunQuery } from '../common/messages.js';
import { backupResultJson, codedFailure, type PackedSummary } from '../common/rules.js';
import { DEFAULTS, bundleWorkflowId, type SessionKind } from '../common/session.js';
import { MANIFEST_NAME, type Device } from '../engine/device.js';
import { BaseManifestInvalid, runOffThread } from '../engine/offThread.js';
import { asFailure, sessionBundle } from './failures.js';
import { handOverFiles, type HandOverFile, type HandOverResult } from './handOver.js';
import { heartbeatWhile } from './heartbeatWhile.js';
import { activityTags, metrics } from './metrics.js';
import { oneAttemptAtATime } from './oneAttemptAtATime.js';
import { ProgressReporter } from './progressReporter.js';
import { waitForToolBegun } from './toolBegunMarks.js';

export interface PackInput {
  sessionId: string;
  sessionWorkflowId: string;
  bundleName: string;
  kind?: SessionKind;
  baseManifestPath?: string;
  baseTime?: number;
}

export function createBackupActivities(device: Device) {
  return {
    /**
     * Packs the bundle and hands its files over, in one activity: a small bundle then costs its child one
     * activity, and its session one signal for begin and one for files, result and end. `reportBegin`: this
     * activity tells the session the bundle began (the workflow did not, as it does before a hook). Returns
     * `ended` once the last file and the end went out; a rate of 0 stops it early (the workflow waits durably).
     */
    async packBundleData(input: PackInput & { reportBegin?: boolean; hookOutput: string; startedAt: number }) {
      return oneAttemptAtATime(`pack:${input.sessionId}/${input.bundleName}`, async () => {
        const ctx = Context.current();
        const session = ctx.client.workflow.getHandle(input.sessionWorkflowId);
        // Every attempt says so: the session keeps the first begin and drops repeats.
        if (input.reportBegin) await session.signal(bundleEventsSignal, [{ type: 'bundleBegin', bundleName: input.bundleName }]);
        // An earlier attempt that got as far as the hand-over packed it all, and the tool may be reading those files:
        // packing again (a resume rewrites the index) would change them under it. Its heartbeat kept the summary.
        const earlier = ctx.info.heartbeatDetails as { packed?: PackedSummary } | undefined;
        const { packed, handed: packedFiles } = earlier?.packed ? { packed: earlier.packed, handed: undefined } : await pack(input);
        const selfId = bundleWorkflowId(input.sessionId, input.bundleName);
        const self = ctx.client.workflow.getHandle(selfId);
        // A rate the tool sets in onBundleBegin reaches the bundle before the tool's toolBegun mark does: wait for
        // that (bounded: a tool that is away must not stall the bundle), then the rate paces the first file. The
        // mark wakes this wait in-process (toolBegunMarks.ts); asking the child covers one held elsewhere.
        const waitStarted = performance.now();
        const begun = await waitForToolBegun({
          // The child that scheduled this activity: the run whose query handler marks it.
          run: { namespace: ctx.info.namespace, workflowId: selfId, runId: ctx.info.workflowExecution?.runId ?? '' },
          waitMs: DEFAULTS.toolBegunWaitMs,
          signal: ctx.cancellationSignal,
          ask: () => self.query(toolBegunQuery),
          onAsk: () => ctx.heartbeat({ packed }),
        });
        metrics().toolBegunWaitSeconds.record((performance.now() - waitStarted) / 1000, { ...activityTags(ctx.info), ended_by: begun.by });
        const { bundleName } = input;
        const handed = await handOverFiles(ctx.client, {
          ...handOverPaths(input),
          bundleName,
          from: 0,
          // The files the pack just made (a retry that skipped it reads them from the index).
          files: packedFiles,
          // The rate toolBegun brought (undefined: the tool is away; the hand-over asks the bundle).
          sendRate: begun.by === 'bound' ? undefined : begun.sendRate,
          heartbeat: { packed },
          closing: () => [
            {
              type: 'resultReport',
              bundleName,
              result: backupResultJson(bundleName, input.kind === 'incremental', input.hookOutput, packed, Date.now() - input.startedAt),
            },
            { type: 'bundleEnd', bundleName },
          ],
        });
        return { ...packed, next: handed.next, ended: handed.next >= packed.handOver };
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
      return handOverFiles(ctx.client, {
        ...handOverPaths(input),
        // A retry may start long after it was scheduled: it asks the bundle for its rate instead.
        sendRate: ctx.info.attempt === 1 ? input.sendRate : undefined,
        bundleName: input.bundleName,
        from: input.from,
      });
    },

    async cleanBundleSession(input: { sessionId: string; bundleName: string }): Promise<void> {
      await rm(sessionBundle(device, input.sessionId, input.bundleName).packDir(input.sessionId), { recursive: true, force: true });
    },
  };

  /** Where a bundle's hand-over reads its packed files, and the workflows it tells. */
  function handOverPaths(input: { sessionId: string; sessionWorkflowId: string; bundleName: string; kind?: SessionKind }) {
    const packDir = sessionBundle(device, input.sessionId, input.bundleName).packDir(input.sessionId);
    return {
      manifestPath: input.kind === 'incremental' ? `${packDir}/${MANIFEST_NAME}` : undefined,
      sessionWorkflowId: input.sessionWorkflowId,
      bundleWorkflowId: bundleWorkflowId(input.sessionId, input.bundleName),
      packDir,
    };
  }

  /**
   * Packs the bundle (engine/pack); a retry resumes from what an earlier attempt completed. `packed` goes to the
   * workflow (and heartbeats); `handed`, the files to hand over, stays in this process.
   */
  async function pack(input: PackInput): Promise<{ packed: PackedSummary; handed: HandOverFile[] }> {
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
    const alive = heartbeatWhile(ctx);
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
            alive.report(p);
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
      const packed: PackedSummary = {
        files: summary.files,
        dirs: summary.dirs,
        bytes: summary.bytes,
        skipped: summary.skipped,
        handOver: summary.handOver + 1,
        changed: summary.changed,
        unchanged: summary.unchanged,
        deleted: summary.deleted,
      };
      return { packed, handed: summary.handed };
    } catch (err) {
      if (err instanceof BaseManifestInvalid) {
        throw codedFailure(ErrorCode.INVALID_ARGUMENT, `the previous manifest of ${input.bundleName} is not valid: ${err.message}`);
      }
      throw asFailure(err, ErrorCode.TAR_FAILED);
    } finally {
      alive.stop();
      progress.stop();
    }
  }
}
