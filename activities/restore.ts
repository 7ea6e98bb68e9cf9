/** The restore activities: the tool's file targets, applying its files (engine/unpack), and cleaning up after. */
import { activityTags, metrics } from './metrics.js';
import { constants as fsc } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { Context } from '@temporalio/activity';
import { ErrorCode, codeForSystemError, errorInfo, type ErrorInfo } from '../common/errors.js';
import { codedFailure, isPlainUri } from '../common/rules.js';
import type { Device } from '../engine/device.js';
import { runOffThread } from '../engine/offThread.js';
import { RestoreRejected } from '../engine/unpack/index.js';
import { asFailure, sessionBundle } from './failures.js';
import { heartbeatWhile } from './heartbeatWhile.js';
import { oneAttemptAtATime } from './oneAttemptAtATime.js';
import { ProgressReporter } from './progressReporter.js';

export function createRestoreActivities(device: Device) {
  return {
    /**
     * Creates the empty target for one file the tool will write, private
     * (0600) and never through a link. The session asks once per uri, so an
     * existing file here is this activity's own earlier attempt: it is
     * emptied and reused, which keeps a retry after a worker death harmless.
     */
    async createRestoreTarget(input: {
      sessionId: string;
      bundleName: string;
      uri: string;
    }): Promise<{ ok: true; path: string } | { ok: false; error: ErrorInfo }> {
      if (!isPlainUri(input.uri)) {
        return { ok: false, error: errorInfo(ErrorCode.INVALID_ARGUMENT, `uri "${input.uri}" is not a plain file name`) };
      }
      const dir = `${sessionBundle(device, input.sessionId, input.bundleName).restoreDir(input.sessionId)}/files`;
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

    /** Verifies the tool's files against their index, unpacks them safely and applies them (api.md §9). */
    async applyRestoreData(input: { sessionId: string; sessionWorkflowId: string; bundleName: string; keepPrevious?: boolean }) {
      return oneAttemptAtATime(`apply:${input.sessionId}/${input.bundleName}`, async () => {
        const ctx = Context.current();
        const bundle = device.bundle(input.bundleName);
        const loaded = await bundle.profile();
        if (!loaded.ok) throw codedFailure(loaded.error.code, loaded.error.message);
        const paths = bundle.paths;
        const work = sessionBundle(device, input.sessionId, input.bundleName).restoreDir(input.sessionId);
        const progress = new ProgressReporter(ctx.client, input.sessionWorkflowId, input.bundleName);
        progress.start('verifying: 0 files, 0 bytes');
        const alive = heartbeatWhile(ctx);
        try {
          // On a thread of the engine's pool: verifying and creating files on another core, bundles side by side.
          return await runOffThread(
            'restore',
            {
              bundleName: input.bundleName,
              restoreDir: `${work}/files`,
              dataDir: paths.data,
              stagingDir: `${work}/staging`,
              // The index decides, there (this thread stays free for heartbeats): an increment (its index lists
              // deletions) is merged into the current data, a full set replaces it.
              mode: 'byIndex',
              // fullBackupOnly: a full set's verified tree stays in the temp area, outside the session's folder so release keeps it.
              ...(loaded.config.fullBackupOnly ? { tempOnlyStagingDir: `${paths.restoreTemp}/restored-${input.sessionId}` } : {}),
              ...(input.keepPrevious ? { keepPreviousAs: `${paths.data}.before-${input.sessionId}` } : {}),
              // In the session's folder: a retry after the swap finds the apply done; released with the session.
              appliedRecord: `${work}/applied.json`,
            },
            {
              signal: ctx.cancellationSignal,
              onProgress: (p) => {
                alive.report(p);
                progress.update(`restoring: ${p.files} files, ${p.bytes} bytes`);
              },
            },
          );
        } catch (err) {
          if (err instanceof RestoreRejected) {
            metrics().verificationFailures.add(1, activityTags(ctx.info));
            throw codedFailure(err.code, err.message);
          }
          throw asFailure(err, ErrorCode.UNTAR_FAILED);
        } finally {
          alive.stop();
          progress.stop();
        }
      });
    },

    async cleanRestoreSession(input: { sessionId: string; bundleName: string }): Promise<void> {
      await rm(sessionBundle(device, input.sessionId, input.bundleName).restoreDir(input.sessionId), { recursive: true, force: true });
    },
  };
}
