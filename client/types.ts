/** The reference's public types (api.md §2–3), as the tool sees them. */
import type { BusinessError } from '../common/businessError.js';

export interface FileMeta {
  bundleName: string;
  /** Only [0-9a-zA-Z_.]: a name, never a path. */
  uri: string;
}
export interface FileData {
  fd: number;
}
export interface FileManifestData {
  manifestFd: number;
}
export interface IncrementalBackupTime {
  bundleName: string;
  /** Seconds since the epoch; 0 = full. */
  lastIncrementalTime: number;
}
export interface BackupParams {
  parameters?: string;
}
export interface BackupPriority {
  priority?: number;
}
export type IncrementalBackupData = IncrementalBackupTime & FileManifestData & BackupParams & BackupPriority;
/** ohbackup's addition to a backup's File: when the worker handed it over (epoch ms, the worker's clock), for latency figures. */
export interface FileReadyTime {
  readyAt?: number;
}
export type File = FileMeta & FileData & Partial<FileManifestData> & FileReadyTime;

export type AsyncCallback<T> = (err: BusinessError | undefined, data: T) => void;
export type OnBackupSizeReport = (reportInfo: string) => void;

/**
 * What the tool is told, in the order api.md §3 promises. `err` is undefined on
 * success. Declared as methods so callbacks written against the reference's
 * `(err: BusinessError, …)` signature fit.
 */
export interface GeneralCallbacks {
  onFileReady(err: BusinessError | undefined, file: File): void;
  onBundleBegin(err: BusinessError<string | void> | undefined, bundleName: string): void;
  onBundleEnd(err: BusinessError<string | void> | undefined, bundleName: string): void;
  onAllBundlesEnd(err: BusinessError | undefined): void;
  onBackupServiceDied(): void;
  onResultReport?(bundleName: string, result: string): void;
  onProcess?(bundleName: string, process: string): void;
  onBackupSizeReport?(reportInfo: string): void;
}
