/** The device activities: a bundle's profile and hooks, size scans, temp folders and capability files. */
import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { BundleNameSchema, type HookName } from '../common/device.js';
import { ErrorCode, errorInfo, type ErrorInfo } from '../common/errors.js';
import { bundleEventsSignal } from '../common/messages.js';
import { codedFailure } from '../common/rules.js';
import type { BundleInstall, SessionKind } from '../common/session.js';
import { buildCapabilities } from '../engine/capabilities.js';
import type { Device } from '../engine/device.js';
import { runHook } from '../engine/hooks.js';
import { warmEngineThreads } from '../engine/offThread.js';
import { scanDataSize, type SizeScanItem } from '../engine/scanSize.js';
import { sessionBundle } from './failures.js';
import { ProgressReporter } from './progressReporter.js';

/** The engine job a session's bundles will run: their threads start while the session sets up. */
const engineJobOf = (kind: SessionKind) => (kind === 'restore' ? 'restore' : 'pack');

export type HookResult = { ran: false; output: '' } | { ran: true; output: string; durationMs: number; truncated: boolean };

export function createDeviceActivities(device: Device, stateDir: string) {
  /** Checks a bundle before it begins (restore: installs it first when asked). */
  async function prepareBundle(input: {
    bundleName: string;
    kind: SessionKind;
    install?: BundleInstall;
  }): Promise<{ ok: true; hooks: HookName[] } | { ok: false; error: ErrorInfo }> {
    const bundle = device.bundle(input.bundleName);
    warmEngineThreads(engineJobOf(input.kind));
    if (input.kind === 'restore' && input.install) await bundle.install(input.install);
    const loaded = await bundle.profile();
    if (!loaded.ok) return loaded;
    if (!loaded.config.allowToBackupRestore) {
      return { ok: false, error: errorInfo(ErrorCode.BUNDLE_NOT_SUPPORTED, `${input.bundleName}: its profile does not allow backup and restore`) };
    }
    return { ok: true, hooks: Object.keys(loaded.bundle.extension ?? {}) as HookName[] };
  }

  return {
    prepareBundle,

    /** A backup session's check of the bundles of one appendBundles call: one activity for all of them. */
    async prepareBundles(input: { bundleNames: string[]; kind: SessionKind }) {
      warmEngineThreads(engineJobOf(input.kind));
      const answers: Awaited<ReturnType<typeof prepareBundle>>[] = [];
      // A few at a time: an append of a thousand bundles must not open a thousand profiles at once.
      for (let i = 0; i < input.bundleNames.length; i += 16) {
        const some = input.bundleNames.slice(i, i + 16);
        answers.push(...(await Promise.all(some.map((bundleName) => prepareBundle({ bundleName, kind: input.kind })))));
      }
      return answers;
    },

    /**
     * Runs one of the bundle's hooks, if it declares it. A hook that fails or
     * outlives `timeoutMs` fails the activity with its reference code.
     */
    async runBundleHook(input: {
      sessionWorkflowId?: string;
      bundleName: string;
      hook: HookName;
      input?: string;
      parameters?: string;
      timeoutMs: number;
    }): Promise<HookResult> {
      const ctx = Context.current();
      const bundle = device.bundle(input.bundleName);
      const loaded = await bundle.profile();
      const command = loaded.ok ? loaded.bundle.extension?.[input.hook] : undefined;
      if (!command) return { ran: false, output: '' };
      const progress = input.sessionWorkflowId ? new ProgressReporter(ctx.client, input.sessionWorkflowId, input.bundleName) : undefined;
      progress?.start(`hook ${input.hook} running`);
      try {
        const run = await runHook({
          hook: input.hook,
          command,
          bundleName: input.bundleName,
          bundleRoot: bundle.paths.root,
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
      await scanDataSize(device, input.precise, input.dataList, (report) => session.signal(bundleEventsSignal, [{ type: 'sizeReport', report }]), {
        signal: ctx.cancellationSignal,
        onTick: () => ctx.heartbeat({ reported }),
        from: reported,
        onReported: (n) => ctx.heartbeat({ reported: (reported = n) }),
      });
    },

    /** cleanBundleTempDir: empties the bundle's backup/backup and backup/restore folders. */
    async cleanBundleTempDir(input: { bundleName: string }): Promise<boolean> {
      if (!BundleNameSchema.safeParse(input.bundleName).success) return false;
      const bundle = device.bundle(input.bundleName);
      const loaded = await bundle.profile();
      if (!loaded.ok) return false;
      for (const dir of [bundle.paths.backupTemp, bundle.paths.restoreTemp]) {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true, mode: 0o700 });
      }
      return true;
    },

    async cleanSessionTemp(input: { sessionId: string; bundleNames: string[] }): Promise<void> {
      const dirs = new Set<string>();
      for (const name of input.bundleNames) {
        if (!BundleNameSchema.safeParse(name).success) continue;
        const bundle = sessionBundle(device, input.sessionId, name);
        dirs.add(bundle.packDir(input.sessionId)).add(bundle.restoreDir(input.sessionId));
      }
      // Side by side: each removal is a chain of thread-pool round trips, and the folders are distinct.
      await Promise.all([...dirs].map((dir) => rm(dir, { recursive: true, force: true })));
    },

    /** Writes the capability file where the tool can open it; the tool unlinks it once it holds an fd. */
    async writeCapabilities(input: { only?: Array<{ bundleName: string; lastIncrementalTime: number }> }): Promise<string> {
      const caps = await buildCapabilities(device, input.only);
      const dir = `${stateDir}/transfer`;
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const path = `${dir}/capabilities-${randomUUID()}.json`;
      await writeFile(path, JSON.stringify(caps, null, 2), { mode: 0o600 });
      return path;
    },
  };
}
