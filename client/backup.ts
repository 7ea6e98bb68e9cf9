/** The `backup` namespace: the reference's names, exactly (api.md). */
export { SessionBackup } from './sessions/backup.js';
export { SessionRestore } from './sessions/restore.js';
export { IncrementalBackupSession } from './sessions/incremental.js';
export { getBackupInfo, getBackupVersion, getLocalCapabilities, updateTimer, updateSendRate } from './moduleFunctions.js';
export { configure, closeConnection, type ToolOptions } from './connection.js';
export { BusinessError } from '../common/businessError.js';
export { ErrorCode } from '../common/errors.js';
export type { SessionOptions } from './sessions/base.js';
export type {
  AsyncCallback,
  BackupParams,
  BackupPriority,
  File,
  FileData,
  FileManifestData,
  FileMeta,
  GeneralCallbacks,
  IncrementalBackupData,
  IncrementalBackupTime,
  OnBackupSizeReport,
} from './types.js';
