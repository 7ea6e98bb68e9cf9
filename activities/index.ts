/**
 * The activities of one device's worker: Temporal adapters (heartbeats,
 * onProcess progress, failure codes) around the work in engine/. Workflows
 * reach them only through `proxyActivities`, by these names.
 */
import { Device } from '../engine/device.js';
import { createBackupActivities } from './backup.js';
import { createClaimActivities } from './claims.js';
import { createDeviceActivities } from './device.js';
import { createRestoreActivities } from './restore.js';
import { runScheduledBackup } from './scheduledBackup.js';
import { createDeviceRunActivities } from './deviceRun.js';

import type { DeviceConfig } from './deviceConfig.js';

export type { HookResult } from './device.js';
export type { DeviceConfig } from './deviceConfig.js';

export function createActivities(config: DeviceConfig) {
  const device = new Device(config.dataRoot);
  return {
    ...createClaimActivities(),
    ...createDeviceActivities(device, config.stateDir),
    ...createBackupActivities(device),
    ...createRestoreActivities(device),
    /** One run of an `ohbackup schedule`: plays the tool's part of a backup session into a new set (scheduledBackup.ts). */
    runScheduledBackup,
    ...createDeviceRunActivities(config),
  };
}
