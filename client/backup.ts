/** The `backup` namespace: the reference's names, exactly (api.md). */
export { SessionBackup } from './sessionBackup.js';
export { SessionRestore } from './sessionRestore.js';
export { IncrementalBackupSession } from './incrementalBackupSession.js';
export { getBackupInfo, getBackupVersion, getLocalCapabilities, updateTimer, updateSendRate } from './moduleFunctions.js';
export { configure, closeConnection, type ToolOptions } from './connection.js';
export { BusinessError } from '../common/businessError.js';
export { ErrorCode } from '../common/errors.js';
export type { SessionOptions } from './sessionBase.js';
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
