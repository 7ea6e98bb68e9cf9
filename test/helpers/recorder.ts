import { closeSync } from 'node:fs';
/** GeneralCallbacks that record every call in order and keep each file in a backup set; waits are event-driven. */
import type { BusinessError } from '../../common/businessError.js';
import type { BackupSetWriter } from '../../client/sets/writer.js';
import type { File, GeneralCallbacks } from '../../client/types.js';

export interface Recorded {
  cb: keyof GeneralCallbacks;
  bundleName?: string;
  code?: number;
  message?: string;
  uri?: string;
  payload?: string;
}

export class Recorder {
  readonly calls: Recorded[] = [];
  private waiters: Array<{ pred: () => boolean; resolve: () => void }> = [];

  /** `observer`: only record (another driver owns the fds, e.g. restoreFromSet's `observe`). */
  constructor(
    private readonly set?: BackupSetWriter,
    private readonly opts: { observer?: boolean } = {},
  ) {}

  readonly callbacks: GeneralCallbacks = {
    onFileReady: (err: BusinessError | undefined, file: File) => {
      this.push({ cb: 'onFileReady', bundleName: file.bundleName, uri: file.uri, code: err?.code });
      if (err || this.opts.observer) return;
      // Keep the file in the set, or just close the fd: the tool owns every fd it is handed.
      if (this.set) this.set.keep(file.bundleName, file.uri, file.fd);
      else closeSync(file.fd);
    },
    onBundleBegin: (err, bundleName) => this.push({ cb: 'onBundleBegin', bundleName, code: err?.code, message: err?.message }),
    onBundleEnd: (err, bundleName) => this.push({ cb: 'onBundleEnd', bundleName, code: err?.code, message: err?.message }),
    onAllBundlesEnd: (err) => this.push({ cb: 'onAllBundlesEnd', code: err?.code }),
    onBackupServiceDied: () => this.push({ cb: 'onBackupServiceDied' }),
    onResultReport: (bundleName, result) => this.push({ cb: 'onResultReport', bundleName, payload: result }),
    onProcess: (bundleName, process) => this.push({ cb: 'onProcess', bundleName, payload: process }),
    onBackupSizeReport: (report) => this.push({ cb: 'onBackupSizeReport', payload: report }),
  };

  private push(r: Recorded): void {
    this.calls.push(r);
    this.waiters = this.waiters.filter((w) => (w.pred() ? (w.resolve(), false) : true));
  }

  /** Resolves once `pred` holds (checked after every callback). */
  until(pred: (calls: Recorded[]) => boolean): Promise<void> {
    if (pred(this.calls)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ pred: () => pred(this.calls), resolve }));
  }

  of(bundleName: string): Recorded[] {
    return this.calls.filter((c) => c.bundleName === bundleName);
  }

  count(cb: keyof GeneralCallbacks): number {
    return this.calls.filter((c) => c.cb === cb).length;
  }
}
