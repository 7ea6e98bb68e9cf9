/** backup.SessionBackup: a full backup session (api.md §5). */
import { BusinessError } from '../common/businessError.js';
import { ErrorCode } from '../common/errors.js';
import { toBusinessError } from './failures.js';
import { SessionBase, type SessionOptions } from './sessionBase.js';
import type { AsyncCallback, GeneralCallbacks, IncrementalBackupTime } from './types.js';
import { BundleListArg, InfosArg, parseArg } from './validate.js';

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
    const s = new SessionBackup(callbacks, { ...options, attachTo: sessionId });
    // Whether it was appended to is the workflow's to say: it refuses a second appendBundles itself.
    return s;
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
    const done = this.appendOnce(bundles, infos);
    if (typeof second === 'function') {
      done.then(
        () => second(undefined, undefined),
        (err) => second(toBusinessError(err), undefined),
      );
      return;
    }
    return done;
  }

  private async appendOnce(bundles: string[], infos?: string[]): Promise<void> {
    if (this.appended) throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: appendBundles may be called once per backup session');
    this.appended = true;
    await this.append({ bundles: bundles.map((bundleName, i) => ({ bundleName, info: infos?.[i] })) });
  }
}
