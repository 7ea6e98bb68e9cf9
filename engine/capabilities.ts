/** Builds the capability file (api.md §8) describing the device's bundles. */
import os from 'node:os';
import { BACKUP_VERSION, type BundleInfo, type Capabilities } from '../common/capabilities.js';
import type { Device } from './device.js';
import { walkSteps } from './walk.js';

/** `since` (seconds since the epoch) per bundle: `increSpaceOccupied` counts the bytes changed after it. */
export async function buildCapabilities(device: Device, only?: Array<{ bundleName: string; lastIncrementalTime: number }>): Promise<Capabilities> {
  const names = only ? only.map((b) => b.bundleName) : await device.bundleNames();
  const infos: BundleInfo[] = [];
  for (const name of names) {
    const bundle = device.bundle(name);
    const loaded = await bundle.profile();
    if (!loaded.ok) continue;
    const since = only?.find((b) => b.bundleName === name)?.lastIncrementalTime;
    let space = 0;
    let incre = 0;
    // The walk's synchronous steps (a promise among them is the event loop's turn): it runs beside the packs.
    for (const item of walkSteps(bundle.paths.data, loaded.config)) {
      if (item instanceof Promise) await item;
      else if (item.type === 'entry' && item.kind === 'file') {
        space += item.size;
        if (since !== undefined && item.mtimeMs > since * 1000) incre += item.size;
      }
    }
    infos.push({
      name,
      appIndex: loaded.bundle.appIndex,
      versionCode: loaded.bundle.versionCode,
      versionName: loaded.bundle.versionName,
      spaceOccupied: space,
      ...(since !== undefined ? { increSpaceOccupied: incre } : {}),
      allToBackup: loaded.config.allowToBackupRestore,
      fullBackupOnly: loaded.config.fullBackupOnly,
      extensionName: loaded.bundle.extension ? `${name}.BackupExtension` : '',
      restoreDeps: loaded.config.restoreDeps,
      supportScene: loaded.config.supportScene,
      extraInfo: loaded.config.extraInfo,
      needToInstall: false,
    });
  }
  return { backupVersion: BACKUP_VERSION, systemFullName: `ohbackup ${os.type()} ${os.release()}`, deviceType: 'default', bundleInfos: infos };
}
