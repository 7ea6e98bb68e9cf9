/**
 * The reference's error codes (api.md §6), defined once. Workflows, activities
 * and the client all import from here; nothing here touches I/O, so workflow
 * code may import it.
 */
export const ErrorCode = {
  PERMISSION_DENIED: 201,
  NOT_SYSTEM_APP: 202,
  PARAMETER_ERROR: 401,
  BUNDLE_NOT_SUPPORTED: 13500001,
  EXTENSION_START_FAILED: 13500002,
  TIMED_OUT: 13500003,
  EXTENSION_DIED: 13500004,
  TAR_FAILED: 13500006,
  UNTAR_FAILED: 13500008,
  TASK_FAILED: 13500010,
  CANCEL_NOT_STARTED: 13500011,
  CANCEL_NO_TASK: 13500012,
  SESSION_CONFLICT: 13500013,
  IPC_ERROR: 13600001,
  NOT_PERMITTED: 13900001,
  IO_ERROR: 13900005,
  OUT_OF_MEMORY: 13900011,
  INVALID_ARGUMENT: 13900020,
  NO_SPACE: 13900025,
  UNKNOWN: 13900042,
} as const;

const messages: Record<number, string> = {
  201: 'Permission verification failed',
  202: 'Not a system application',
  401: 'Parameter error',
  13500001: 'The application is not added to the backup or restore',
  13500002: 'Failed to start application extension procedure',
  13500003: 'Backup or restore timed out',
  13500004: 'Application extension death',
  13500006: 'Tar failed',
  13500008: 'Untar failed',
  13500010: 'Task failed',
  13500011: 'The task to cancel has not started',
  13500012: 'The task to cancel does not exist',
  13500013: 'Session conflict: the bundle is already in another active session',
  13600001: 'IPC error',
  13900001: 'Operation not permitted',
  13900005: 'I/O error',
  13900011: 'Out of memory',
  13900020: 'Invalid argument',
  13900025: 'No space left on device',
  13900042: 'Unknown error',
};

export function describeCode(code: number): string {
  return messages[code] ?? `Error ${code}`;
}

/** A plain, serialisable error as it travels in events and workflow results. */
export interface ErrorInfo {
  code: number;
  message: string;
}

export function errorInfo(code: number, detail?: string): ErrorInfo {
  return { code, message: detail ? `${describeCode(code)}: ${detail}` : describeCode(code) };
}

/** The ApplicationFailure `type` under which workflows and activities carry a reference code. */
export const FAILURE_TYPE = 'OhbackupError';

/**
 * The ApplicationFailure `type` of a restore update the session refuses for a moment while it continues as new
 * (Temporal caps the updates one run takes): the tool asks again shortly, on the next run.
 */
export const CONTINUING_TYPE = 'OhbackupSessionContinuing';

/** Maps a Node.js system error (errno code) to the reference's code. */
export function codeForSystemError(err: unknown): number {
  const c = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (c) {
    case 'ENOSPC':
    case 'EDQUOT':
      return ErrorCode.NO_SPACE;
    case 'EMFILE':
    case 'ENFILE':
    case 'ENOMEM':
      return ErrorCode.OUT_OF_MEMORY;
    case 'EIO':
    case 'EACCES':
    case 'EPERM':
    case 'ENOENT':
    case 'EISDIR':
    case 'ENOTDIR':
      return ErrorCode.IO_ERROR;
    default:
      return ErrorCode.UNKNOWN;
  }
}
