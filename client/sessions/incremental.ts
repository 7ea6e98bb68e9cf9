/** backup.IncrementalBackupSession: incremental backups (api.md §5). */
import { randomUUID } from 'node:crypto';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { BusinessError } from '../../common/businessError.js';
import { readSettings } from '../../config/env.js';
import { ErrorCode, codeForSystemError, describeCode } from '../../common/errors.js';
import type { AppendRequest } from '../../common/messages.js';
import type { BundleRequest } from '../../common/session.js';
import { checkBaseManifest, copyBaseManifest } from '../baseManifest.js';
import { SessionBase, attachOptions, type SessionOptions } from './base.js';
import type { GeneralCallbacks, IncrementalBackupData, IncrementalBackupTime } from '../types.js';
import { BundleNameArg, InfosArg, checkAppendSize, parseArg } from '../validate.js';

/**
 * BackupParams.parameters: a JSON string of options, given to the bundle's
 * hooks as the environment variable OHBACKUP_PARAMETERS, so at most what one
 * environment string may hold (Linux: 128 KiB, name included).
 */
const MAX_PARAMETERS_BYTES = 120 * 1024;
const ParametersArg = z
  .string()
  .refine((s) => Buffer.byteLength(s) <= MAX_PARAMETERS_BYTES, `parameters are at most ${MAX_PARAMETERS_BYTES} bytes (UTF-8)`)
  .refine((s) => {
    try {
      JSON.parse(s);
      return true;
    } catch {
      return false;
    }
  }, 'parameters must be a JSON string');

const IncrementalDataArg = z
  .array(
    z.object({
      bundleName: BundleNameArg,
      lastIncrementalTime: z.number().finite().nonnegative(),
      manifestFd: z.number().int(),
      parameters: ParametersArg.optional(),
      priority: z.number().int().finite().optional(),
    }),
  )
  .min(1, 'name at least one bundle')
  .max(10_000);

export class IncrementalBackupSession extends SessionBase {
  protected readonly kind = 'incremental' as const;

  /** Size scan before backing up (api.md §5): onBackupSizeReport every 5 s until every listed bundle is reported. */
  getBackupDataSize(isPreciseScan: boolean, dataList: IncrementalBackupTime[]): Promise<void> {
    return this.startSizeScan(isPreciseScan, dataList);
  }

  constructor(callbacks: GeneralCallbacks, options: SessionOptions = {}) {
    super(callbacks, 'incremental', options);
  }

  static attach(sessionId: string, callbacks: GeneralCallbacks, options: Omit<SessionOptions, 'attachTo' | 'sessionId'> = {}): IncrementalBackupSession {
    return new IncrementalBackupSession(callbacks, attachOptions(sessionId, options));
  }

  /**
   * Adds bundles, any number of times until release(). Each brings the time and
   * the manifest fd of its previous backup (lastIncrementalTime 0 = full; the
   * manifest is read here, the tool keeps and closes its fd). Higher priority
   * starts first; equal priority keeps append order.
   */
  appendBundles(bundlesToBackup: IncrementalBackupData[], infos?: string[]): Promise<void> {
    const bundles = parseArg(IncrementalDataArg, bundlesToBackup, 'bundlesToBackup');
    const parsedInfos = parseArg(InfosArg, infos, 'infos');
    if (parsedInfos && parsedInfos.length > bundles.length) {
      throw new BusinessError(ErrorCode.PARAMETER_ERROR, 'Parameter error: infos has more entries than bundlesToBackup');
    }
    checkAppendSize([...bundles.flatMap((b) => [b.bundleName, b.parameters]), ...(parsedInfos ?? [])], 'bundlesToBackup and infos');
    return this.appendIncrement(bundles, parsedInfos);
  }

  /** Ends the session (see SessionBase.release), then drops the copies of the base manifests it kept. */
  override async release(): Promise<void> {
    await super.release();
    await rm(this.transferDir(), { recursive: true, force: true });
  }

  /** Where the tool leaves the base manifests for the device's worker. */
  private transferDir(): string {
    return path.join(readSettings().stateDir, 'transfer', this.sessionId);
  }

  private async appendIncrement(bundles: IncrementalBackupData[], infos?: string[]): Promise<void> {
    if (this.released) throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: the session was released');
    const kept: string[] = [];
    try {
      // Handed over before the first await: a first append still rides with the session's start, which waits for it.
      await this.append(this.prepare(bundles, infos, kept));
    } catch (err) {
      const e = err instanceof BusinessError ? err : keepFailure(err);
      // Refused (or never sent): nothing will read the copies. An IPC error leaves it open whether the session took them.
      if (e.code !== ErrorCode.IPC_ERROR) {
        await Promise.all(kept.map((f) => rm(f, { force: true })));
        if (kept.length) await rmdir(this.transferDir()).catch(() => undefined);
      }
      throw e;
    }
  }

  /** The append's request: every base manifest checked, then copied for the worker (each copy's path into `kept`). */
  private async prepare(bundles: IncrementalBackupData[], infos: string[] | undefined, kept: string[]): Promise<AppendRequest> {
    const incremental = (b: IncrementalBackupData) => b.lastIncrementalTime !== 0 && b.manifestFd >= 0;
    // Every base manifest is checked before anything is written: a call refused for one leaves no file behind.
    await Promise.all(bundles.filter(incremental).map((b) => checkBaseManifest(b.manifestFd, b.bundleName)));
    const dir = this.transferDir();
    if (bundles.some(incremental)) await mkdir(dir, { recursive: true, mode: 0o700 });
    const requests: Array<Omit<BundleRequest, 'order' | 'priority'> & { priority?: number }> = [];
    for (const [i, b] of bundles.entries()) {
      let baseManifestPath: string | undefined;
      if (incremental(b)) {
        // Its own name per call: a bundle appended again must not overwrite the base its first run reads.
        baseManifestPath = path.join(dir, `${b.bundleName}.${randomUUID().slice(0, 8)}.base-manifest.jsonl`);
        kept.push(baseManifestPath);
        await copyBaseManifest(b.manifestFd, baseManifestPath);
      }
      requests.push({
        bundleName: b.bundleName,
        info: infos?.[i],
        priority: b.priority,
        parameters: b.parameters,
        lastIncrementalTime: b.lastIncrementalTime,
        baseManifestPath,
      });
    }
    return { bundles: requests };
  }
}

/** Copying a base manifest failed (disk full, …): its reference code. */
function keepFailure(err: unknown): BusinessError {
  const code = codeForSystemError(err);
  return new BusinessError(
    code === ErrorCode.UNKNOWN ? ErrorCode.IO_ERROR : code,
    `${describeCode(code === ErrorCode.UNKNOWN ? ErrorCode.IO_ERROR : code)}: cannot keep the base manifests: ${(err as Error)?.message ?? err}`,
  );
}
