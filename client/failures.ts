/** Maps what the Temporal client throws to the reference's BusinessError codes. */
import { ServiceError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { BusinessError } from '../common/businessError.js';
import { ErrorCode, FAILURE_TYPE } from '../common/errors.js';
import { describeEnd, type SessionResult } from '../common/session.js';

/**
 * The session completed, but not by this tool: released by another client
 * (`ohbackup release`, the UI's cancel) or abandoned (its tool was silent past
 * its tool timeout). `how` says which, in words.
 */
export class SessionEndedElsewhere extends BusinessError<SessionResult> {
  readonly how: string;
  constructor(readonly result: SessionResult) {
    super(ErrorCode.NOT_PERMITTED, `Operation not permitted: the session was ${describeEnd(result)}`);
    this.how = describeEnd(result);
  }

  /** The session's result says it was not ended by its own tool. */
  static of(result: SessionResult): SessionEndedElsewhere | undefined {
    return result.endedBy && result.endedBy !== 'tool' ? new SessionEndedElsewhere(result) : undefined;
  }
}

const GRPC_PERMISSION_DENIED = 7;
const GRPC_UNAUTHENTICATED = 16;

export function toBusinessError<T = void>(err: unknown, data?: T): BusinessError<T> {
  if (err instanceof BusinessError) return err as BusinessError<T>;
  let e: unknown = err;
  while (e && typeof e === 'object') {
    if (e instanceof ApplicationFailure && e.type === FAILURE_TYPE && typeof e.details?.[0] === 'number') {
      return new BusinessError(e.details[0] as number, e.message, data);
    }
    if (e instanceof ServiceError) {
      const code = (e.cause as { code?: number } | undefined)?.code;
      if (code === GRPC_PERMISSION_DENIED || code === GRPC_UNAUTHENTICATED) return new BusinessError(ErrorCode.PERMISSION_DENIED, e.message, data);
      return new BusinessError(ErrorCode.IPC_ERROR, `IPC error: the Temporal service did not answer: ${e.message}`, data);
    }
    if (e instanceof WorkflowUpdateFailedError && !e.cause) break;
    e = (e as { cause?: unknown }).cause;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new BusinessError(ErrorCode.UNKNOWN, `Unknown error: ${message}`, data);
}
