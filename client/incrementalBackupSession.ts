/** backup.IncrementalBackupSession: incremental backups (api.md §5). */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { readManifest } from '../activities/manifest.js';
import { BusinessError } from '../common/businessError.js';
import { readSettings } from '../common/env.js';
import { ErrorCode } from '../common/errors.js';
import type { BundleRequest } from '../common/session.js';
import { SessionBase, type SessionOptions } from './sessionBase.js';
import type { GeneralCallbacks, IncrementalBackupData, IncrementalBackupTime } from './types.js';
import { BundleNameArg, InfosArg, parseArg } from './validate.js';

const IncrementalDataArg = z
  .array(
    z.object({
      bundleName: BundleNameArg,
      lastIncrementalTime: z.number().finite().nonnegative(),
      manifestFd: z.number().int(),
      parameters: z.string().max(1024 * 1024).optional(),
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
    return new IncrementalBackupSession(callbacks, { ...options, attachTo: sessionId });
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
    return this.appendIncrement(bundles, parsedInfos);
  }

  private async appendIncrement(bundles: IncrementalBackupData[], infos?: string[]): Promise<void> {
    if (this.released) throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: the session was released');
    const requests: Array<Omit<BundleRequest, 'order' | 'priority'> & { priority?: number }> = [];
    for (const [i, b] of bundles.entries()) {
      const full = b.lastIncrementalTime === 0 || b.manifestFd < 0;
      requests.push({
        bundleName: b.bundleName,
        info: infos?.[i],
        priority: b.priority,
        parameters: b.parameters,
        lastIncrementalTime: b.lastIncrementalTime,
        baseManifestPath: full ? undefined : await this.keepManifest(b.bundleName, b.manifestFd),
      });
    }
    await this.append({ bundles: requests });
  }

  /**
   * Copies the previous manifest from the tool's fd to a private file the
   * device's worker reads (tool and worker share the device's filesystem),
   * checking it on the way: an invalid manifest → 13900020.
   */
  private async keepManifest(bundleName: string, fd: number): Promise<string> {
    const dir = path.join(readSettings().stateDir, 'transfer', this.sessionId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, `${bundleName}.base-manifest.jsonl`);
    try {
      await pipeline(createReadStream('', { fd, autoClose: false, start: 0 }), createWriteStream(file, { mode: 0o600 }));
      const { header } = await readManifest(file);
      if (header.bundleName !== bundleName) throw new Error(`it is the manifest of ${header.bundleName}`);
    } catch (err) {
      throw new BusinessError(ErrorCode.INVALID_ARGUMENT, `Invalid argument: the manifest of ${bundleName} (fd ${fd}) is not valid: ${(err as Error).message}`);
    }
    return file;
  }
}
