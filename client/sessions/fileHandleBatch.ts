/**
 * Gathers the getFileHandle calls a tool makes together (a bundle's every file as it begins, the bundles that
 * begin at once) into getFileHandles updates of at most MAX_FILE_HANDLES_PER_UPDATE files: one update's round trip
 * through the session instead of one per file, and a few updates in flight instead of a queue of them.
 */
import { BusinessError } from '../../common/businessError.js';
import type { ErrorInfo } from '../../common/errors.js';
import { MAX_FILE_HANDLES_PER_UPDATE, type FileMetaInput } from '../../common/messages.js';
import type { InFlightLimit } from './inFlight.js';

interface Asked {
  meta: FileMetaInput;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class FileHandleBatch {
  readonly #pending: Asked[] = [];
  /** A send is waiting for its place under the limit and takes what is pending when it gets it. */
  #queued = false;

  constructor(
    private readonly limit: InFlightLimit,
    private readonly send: (metas: FileMetaInput[]) => Promise<Array<ErrorInfo | null>>,
  ) {}

  /** Resolves once the session asked the device for the file's target (it arrives as onFileReady); rejects with its refusal. */
  ask(meta: FileMetaInput): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ meta, resolve, reject });
      this.#queue();
    });
  }

  #queue(): void {
    if (this.#queued) return;
    this.#queued = true;
    void this.limit.run(async () => {
      // One turn of the event loop: the calls made in the same callbacks join this update.
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.#queued = false;
      const batch = this.#pending.splice(0, MAX_FILE_HANDLES_PER_UPDATE);
      if (this.#pending.length) this.#queue();
      try {
        const answers = await this.send(batch.map((a) => a.meta));
        batch.forEach((a, i) => {
          const refused = answers[i];
          if (refused) a.reject(new BusinessError(refused.code, refused.message));
          else a.resolve();
        });
      } catch (err) {
        for (const a of batch) a.reject(err);
      }
    });
  }
}

/**
 * Whether `err` is a session's refusal of an update it has no handler for (an older worker's workflow code, from
 * before getFileHandles): the SDK rejects such an update, unrecorded, with this message.
 */
export function isUnhandledUpdate(err: unknown, name: string): boolean {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    if (e instanceof Error && e.message === `No registered handler for update: ${name}`) return true;
  }
  return false;
}
