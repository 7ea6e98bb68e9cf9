/** backup.SessionRestore: a restore session (api.md §5). */
import { z } from 'zod';
import { BusinessError } from '../../common/businessError.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { toBusinessError } from '../failures.js';
import type { BundleRequest } from '../../common/session.js';
import { getFileHandleUpdate, getFileHandlesUpdate, publishFileUpdate, type FileMetaInput } from '../../common/messages.js';
import { isPlainUri } from '../../common/rules.js';
import { readCapabilityFile } from '../capabilities.js';
import { appMappings } from '../infos.js';
import { settle } from '../settle.js';
import { SessionBase, attachOptions, type SessionOptions } from './base.js';
import { askAgainWhileContinuing } from './continuing.js';
import { FileHandleBatch, isUnhandledUpdate } from './fileHandleBatch.js';
import { InFlightLimit } from './inFlight.js';
import type { AsyncCallback, FileMeta, GeneralCallbacks } from '../types.js';
import { BundleListArg, BundleNameArg, InfosArg, checkAppendSize, parseArg } from '../validate.js';

const FdArg = z.number().int().nonnegative();
/** Types are 401; what the uri says is checked by checkUri (13900020). */
const FileMetaArg = z.object({ bundleName: BundleNameArg, uri: z.string() });
/** A file name, as the filesystem allows one. */
const MAX_URI_LENGTH = 255;
/** getFileHandles and publishFile updates sent at once, under Temporal's 10 per workflow (room left for the session's other calls). */
const UPDATES_IN_FLIGHT = 8;

export class SessionRestore extends SessionBase {
  protected readonly kind = 'restore' as const;
  private appended = false;
  private readonly updates = new InFlightLimit(UPDATES_IN_FLIGHT);
  /** getFileHandle calls made together travel as one getFileHandles update, asked again while the session continues as new. */
  private readonly handles = new FileHandleBatch(this.updates, (metas) => this.askFileHandles(metas));
  /** The session's workflow code predates getFileHandles (an older worker): one getFileHandle update per file. */
  private oneUpdatePerFile = false;

  constructor(callbacks: GeneralCallbacks, options: SessionOptions = {}) {
    super(callbacks, 'restore', options);
  }

  private async askFileHandles(metas: FileMetaInput[]): Promise<Array<ErrorInfo | null>> {
    if (!this.oneUpdatePerFile) {
      const answers = await this.call(({ handle }) =>
        askAgainWhileContinuing(() => handle.executeUpdate(getFileHandlesUpdate, { args: [metas] })).catch((err: unknown) => {
          if (isUnhandledUpdate(err, getFileHandlesUpdate.name)) return undefined;
          throw err;
        }),
      );
      if (answers) return answers;
      this.oneUpdatePerFile = true;
    }
    // One after another: this batch holds one of the session's update slots.
    const answers: Array<ErrorInfo | null> = [];
    for (const meta of metas) {
      answers.push(
        await this.call(({ handle }) => askAgainWhileContinuing(() => handle.executeUpdate(getFileHandleUpdate, { args: [meta] }))).then(
          () => null,
          (err: unknown) => {
            const e = toBusinessError(err);
            return { code: e.code, message: e.message };
          },
        ),
      );
    }
    return answers;
  }

  /** Binds to a running restore session by its ID (see SessionBackup.attach). */
  static attach(sessionId: string, callbacks: GeneralCallbacks, options: Omit<SessionOptions, 'attachTo' | 'sessionId'> = {}): SessionRestore {
    return new SessionRestore(callbacks, attachOptions(sessionId, options));
  }

  /**
   * Adds the bundles to restore, described by the backup's capability file
   * (`remoteCapabilitiesFd`, read here; the tool keeps and closes it). Once per
   * session. An invalid capability file → 13900020; a bundle it does not list →
   * that bundle's onBundleBegin gets 13500001.
   */
  appendBundles(remoteCapabilitiesFd: number, bundlesToRestore: string[], callback: AsyncCallback<void>): void;
  appendBundles(remoteCapabilitiesFd: number, bundlesToRestore: string[], infos?: string[]): Promise<void>;
  appendBundles(remoteCapabilitiesFd: number, bundlesToRestore: string[], third?: AsyncCallback<void> | string[]): Promise<void> | void {
    const fd = parseArg(FdArg, remoteCapabilitiesFd, 'remoteCapabilitiesFd');
    const bundles = parseArg(BundleListArg, bundlesToRestore, 'bundlesToRestore');
    const infos = typeof third === 'function' ? undefined : parseArg(InfosArg, third, 'infos');
    if (infos && infos.length > bundles.length) {
      throw new BusinessError(ErrorCode.PARAMETER_ERROR, 'Parameter error: infos has more entries than bundlesToRestore');
    }
    checkAppendSize([...bundles, ...(infos ?? [])], 'bundlesToRestore and infos');
    return settle(this.appendOnce(fd, bundles, infos), typeof third === 'function' ? third : undefined);
  }

  private async appendOnce(fd: number, bundles: string[], infos?: string[]): Promise<void> {
    if (this.released) throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: the session was released');
    if (this.appended) throw new BusinessError(ErrorCode.NOT_PERMITTED, 'Operation not permitted: appendBundles may be called once per restore session');
    const caps = readCapabilityFile(fd);
    this.appended = true;
    const mapping = appMappings(infos ?? []);
    const requests: Array<Omit<BundleRequest, 'order' | 'priority'>> = bundles.map((bundleName, i) => {
      const info = caps.bundleInfos.find((b) => b.name === bundleName);
      if (!info) {
        return { bundleName, info: infos?.[i], rejected: { code: ErrorCode.BUNDLE_NOT_SUPPORTED, message: `${bundleName} is not in the capability file` } };
      }
      return {
        bundleName,
        info: infos?.[i],
        targetBundle: mapping.get(bundleName),
        ...(this.options.keepPrevious ? { keepPrevious: true } : {}),
        restoreDeps: info.restoreDeps
          .split(',')
          .map((d) => d.trim())
          .filter(Boolean),
        install: {
          versionCode: info.versionCode,
          versionName: info.versionName,
          appIndex: info.appIndex,
          allowToBackupRestore: info.allToBackup,
          fullBackupOnly: info.fullBackupOnly,
          restoreDeps: info.restoreDeps,
          supportScene: info.supportScene,
          extraInfo: info.extraInfo,
        },
      };
    });
    await this.append({ bundles: requests });
  }

  /** Asks for a writable target for one file of a bundle; it arrives as onFileReady with a writable fd. */
  getFileHandle(fileMeta: FileMeta, callback: AsyncCallback<void>): void;
  getFileHandle(fileMeta: FileMeta): Promise<void>;
  getFileHandle(fileMeta: FileMeta, callback?: AsyncCallback<void>): Promise<void> | void {
    const meta = parseArg(FileMetaArg, fileMeta, 'fileMeta');
    const done = checkUri(meta.uri, false).then(() => this.handles.ask(meta));
    return settle(done, callback);
  }

  /** Tells the service the bundle's files are written (uri ''): it then verifies, unpacks and applies them. */
  publishFile(fileMeta: FileMeta, callback: AsyncCallback<void>): void;
  publishFile(fileMeta: FileMeta): Promise<void>;
  publishFile(fileMeta: FileMeta, callback?: AsyncCallback<void>): Promise<void> | void {
    const meta = parseArg(FileMetaArg, fileMeta, 'fileMeta');
    const done = checkUri(meta.uri, true).then(() =>
      this.updates.run(() => this.call(({ handle }) => askAgainWhileContinuing(() => handle.executeUpdate(publishFileUpdate, { args: [meta] })))),
    );
    return settle(done, callback);
  }
}

/** The FileMeta uri rule: a plain name of [0-9a-zA-Z_.], at most 255 long, never a path (13900020). */
async function checkUri(uri: string, emptyAllowed: boolean): Promise<void> {
  if (uri === '' && emptyAllowed) return;
  // Quoted as JSON (control characters visible) and cut short: the message stays readable whatever the uri.
  const shown = JSON.stringify(uri.length > 80 ? `${uri.slice(0, 80)}…` : uri);
  if (uri.length > MAX_URI_LENGTH) {
    throw new BusinessError(ErrorCode.INVALID_ARGUMENT, `Invalid argument: uri ${shown} is ${uri.length} characters long; at most ${MAX_URI_LENGTH}`);
  }
  if (!isPlainUri(uri)) {
    throw new BusinessError(ErrorCode.INVALID_ARGUMENT, `Invalid argument: uri ${shown} may hold only 0-9, a-z, A-Z, "_" and ".", and is never a path`);
  }
}
