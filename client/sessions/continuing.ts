/**
 * A restore session refuses file updates for a moment while it continues as new (Temporal caps the updates one
 * workflow run takes; see the session workflow). The refusal carries CONTINUING_TYPE: ask again shortly, and the
 * next run answers. Bounded: a session that keeps refusing longer than its drain can last is answered as refused.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { ApplicationFailure, WorkflowUpdateFailedError } from '@temporalio/client';
import { CONTINUING_TYPE } from '../../common/errors.js';

const ASK_AGAIN_MS = 100;
/** Well past the session's longest drain (10 s) and a continue-as-new. */
const ASK_AGAIN_FOR_MS = 60_000;

export function isContinuingRefusal(err: unknown): boolean {
  return err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type === CONTINUING_TYPE;
}

export async function askAgainWhileContinuing<T>(fn: () => Promise<T>): Promise<T> {
  const until = Date.now() + ASK_AGAIN_FOR_MS;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!isContinuingRefusal(err) || Date.now() >= until) throw err;
      await delay(ASK_AGAIN_MS);
    }
  }
}
