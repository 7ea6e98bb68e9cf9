/** The module functions of `backup` (api.md §4). */
import { BACKUP_VERSION } from '../common/capabilities.js';
import { clampSendRate } from '../common/rules.js';
import { openCapabilities } from './capabilities.js';
import { deviceQueue, getClient } from './connection.js';
import { toBusinessError } from './failures.js';
import { askBundleHook } from './deviceRequests.js';
import { registry } from './registry.js';
import { settle } from './settle.js';
import type { AsyncCallback, FileData, IncrementalBackupTime } from './types.js';
import { BundleNameArg, DataListArg, SendRateArg, TimeoutArg, parseArg } from './validate.js';

/** `{"backupVersion":"16.0"}`: the API level ohbackup implements. */
export function getBackupVersion(): string {
  return JSON.stringify({ backupVersion: BACKUP_VERSION });
}

/** An fd of the capability file describing the device's bundles (api.md §8). */
export function getLocalCapabilities(callback: AsyncCallback<FileData>): void;
export function getLocalCapabilities(dataList?: IncrementalBackupTime[]): Promise<FileData>;
export function getLocalCapabilities(arg?: AsyncCallback<FileData> | IncrementalBackupTime[]): Promise<FileData> | void {
  const only = typeof arg === 'function' || arg === undefined ? undefined : parseArg(DataListArg, arg, 'dataList');
  const result = getClient()
    .then((client) => openCapabilities(client, deviceQueue(), only))
    .catch((err) => {
      throw toBusinessError(err);
    });
  return settle(result, typeof arg === 'function' ? arg : undefined, { fd: -1 });
}

/**
 * Re-arms a running bundle's deadline to `timeout` ms from now. true only
 * between that bundle's onBundleBegin and onBundleEnd in a session of this process.
 */
export function updateTimer(bundleName: string, timeout: number): boolean {
  parseArg(BundleNameArg, bundleName, 'bundleName');
  parseArg(TimeoutArg, timeout, 'timeout');
  const session = registry.running(bundleName);
  if (!session) return false;
  session.signalBundle(bundleName, 'updateTimer', timeout);
  return true;
}

/** Files per second handed to the tool for a running bundle: > 800 is 800; 0 pauses. */
export function updateSendRate(bundleName: string, sendRate: number): boolean {
  parseArg(BundleNameArg, bundleName, 'bundleName');
  const rate = clampSendRate(parseArg(SendRateArg, sendRate, 'sendRate'));
  const session = registry.running(bundleName);
  if (!session) return false;
  session.signalBundle(bundleName, 'updateSendRate', rate);
  return true;
}

/**
 * What the bundle's extension reports about itself (hook getBackupInfo); '' if
 * it has none. A Promise, not the reference's synchronous string: the answer
 * comes from the device's worker (see README, "Deviations").
 */
export function getBackupInfo(bundleToBackup: string): Promise<string> {
  parseArg(BundleNameArg, bundleToBackup, 'bundleToBackup');
  return getClient()
    .then((client) => askBundleHook(client, deviceQueue(), bundleToBackup, 'getBackupInfo'))
    .catch((err) => {
      throw toBusinessError(err);
    });
}
