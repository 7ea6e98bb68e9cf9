/** The callback forms of the API: a Promise's outcome handed to an AsyncCallback. */
import type { BusinessError } from '../common/businessError.js';
import { toBusinessError } from './failures.js';
import type { AsyncCallback } from './types.js';

/**
 * Returns `done` when there is no callback; otherwise calls `callback` with its
 * outcome (`failed` stands for the data on failure). A callback that throws
 * must not become an unhandled rejection that ends the tool's process.
 */
export function settle<T>(done: Promise<T>, callback: AsyncCallback<T> | undefined, failed?: T): Promise<T> | void {
  if (!callback) return done;
  const call = (err: BusinessError | undefined, data: T) => {
    try {
      callback(err, data);
    } catch (e) {
      process.emitWarning(`ohbackup: an AsyncCallback threw: ${(e as Error)?.stack ?? e}`);
    }
  };
  done.then(
    (data) => call(undefined, data),
    (err) => call(toBusinessError(err), failed as T),
  );
}
