/** backup.SessionBackup: a full backup session (api.md §5). */
import { BusinessError } from '../../common/businessError.js';
import { ErrorCode } from '../../common/errors.js';
import { SessionBase, attachOptions, type SessionOptions } from './base.js';
import { settle } from '../settle.js';
import type { AsyncCallback, GeneralCallbacks, IncrementalBackupTime } from '../types.js';
import { BundleListArg, InfosArg, checkAppendSize, parseArg } from '../validate.js';

export class SessionBackup extends SessionBase {
  protected readonly kind = 'backup' as const;
  private appended = false;

  /** Size scan before backing up (api.md §5): onBackupSizeReport every 5 s until every listed bundle is reported. */
  getBackupDataSize(isPreciseScan: boolean, dataList: IncrementalBackupTime[]): Promise<void> {
    return this.startSizeScan(isPreciseScan, dataList);
  }

  constructor(callbacks: GeneralCallbacks, options: SessionOptions = {}) {
    super(callbacks, 'backup', options);
  }

  /** Binds to a running backup session by its ID; events not yet acknowledged are delivered, once each. */
  static attach(sessionId: string, callbacks: GeneralCallbacks, options: Omit<SessionOptions, 'attachTo' | 'sessionId'> = {}): SessionBackup {
    // Whether it was appended to is the workflow's to say: it refuses a second appendBundles itself.
    return new SessionBackup(callbacks, attachOptions(sessionId, options));
  }

  /** Adds the bundles to back up; once per session (a second call → 13900001). */
  appendBundles(bundlesToBackup: string[], callback: AsyncCallback<void>): void;
  appendBundles(bundlesToBackup: string[], infos?: string[]): Promise<void>;
  appendBundles(bundlesToBackup: string[], second?: AsyncCallback<void> | string[]): Promise<void> | void {
    const bundles = parseArg(BundleListArg, bundlesToBackup, 'bundlesToBackup');
    const infos = typeof second === 'function' ? undefined : parseArg(InfosArg, second, 'infos');
    if (infos && infos.length > bundles.length) {
      throw new BusinessError(ErrorCode.PARAMETER_ERROR, 'Parameter error: infos has more entries than bundlesToBackup');
    }
    checkAppendSize([...bundles, ...(infos ?? [])], 'bundlesToBackup and infos');
    return settle(this.appendOnce(bundles, infos), typeof second === 'function' ? second : undefined);
  }

  private async appendOnce(bundles: string[], infos?: string[]): Promise<void> {
    if (this.appended) throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: appendBundles may be called once per backup session');
    this.appended = true;
    await this.append({ bundles: bundles.map((bundleName, i) => ({ bundleName, info: infos?.[i] })) });
  }
}
