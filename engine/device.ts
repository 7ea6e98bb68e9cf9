/**
 * A device's bundles on disk (api.md §7): `new Device(dataRoot).bundle(name)`
 * gives a bundle's folders, its profile (bundle.json and backup_config.json,
 * 13500001 for what cannot be backed up) and its installation on restore.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { BackupConfigSchema, BundleJsonSchema, BundleNameSchema, bundlePaths, type BackupConfig, type BundleJson, type BundlePaths } from '../common/device.js';
import { ErrorCode, errorInfo, type ErrorInfo } from '../common/errors.js';
import type { BundleInstall } from '../common/session.js';

export type LoadedBundle = { ok: true; bundle: BundleJson; config: BackupConfig } | { ok: false; error: ErrorInfo };

export async function loadBundle(dataRoot: string, bundleName: string): Promise<LoadedBundle> {
  const notSupported = (why: string): LoadedBundle => ({ ok: false, error: errorInfo(ErrorCode.BUNDLE_NOT_SUPPORTED, `${bundleName}: ${why}`) });
  if (!BundleNameSchema.safeParse(bundleName).success) return notSupported('not a valid bundle name');
  const paths = bundlePaths(dataRoot, bundleName);
  let bundleRaw: string;
  try {
    bundleRaw = await readFile(paths.bundleJson, 'utf8');
  } catch {
    return notSupported('no such bundle on this device');
  }
  const bundle = BundleJsonSchema.safeParse(parseJson(bundleRaw));
  if (!bundle.success) return notSupported('bundle.json is not valid');
  let configRaw = '{}';
  try {
    configRaw = await readFile(paths.backupConfig, 'utf8');
  } catch {
    // No profile: the defaults apply, and they do not allow backup.
  }
  const config = BackupConfigSchema.safeParse(parseJson(configRaw));
  if (!config.success) return notSupported('backup_config.json is not valid');
  return { ok: true, bundle: bundle.data, config: config.data };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Restore onto a device that lacks the bundle (the reference's needToInstall):
 * creates its folder, bundle.json and profile from the capability file's
 * description. A bundle that exists is left as it is.
 */
async function installBundle(dataRoot: string, bundleName: string, info: BundleInstall): Promise<void> {
  if (!BundleNameSchema.safeParse(bundleName).success) return;
  const paths = bundlePaths(dataRoot, bundleName);
  if (
    await stat(paths.bundleJson).then(
      () => true,
      () => false,
    )
  )
    return;
  for (const dir of [paths.data, paths.backupTemp, paths.restoreTemp]) await mkdir(dir, { recursive: true, mode: 0o700 });
  const bundle = { name: bundleName, versionCode: info.versionCode, versionName: info.versionName, appIndex: info.appIndex };
  const profile = {
    allowToBackupRestore: info.allowToBackupRestore,
    fullBackupOnly: info.fullBackupOnly,
    restoreDeps: info.restoreDeps,
    supportScene: info.supportScene,
    extraInfo: info.extraInfo ?? {},
  };
  await writeFile(paths.backupConfig, JSON.stringify(profile, null, 2), { mode: 0o600 });
  // bundle.json last: its presence is what makes the bundle exist.
  await writeFile(paths.bundleJson, JSON.stringify(bundle, null, 2), { mode: 0o600 });
}

/** The new full manifest of an incremental backup, beside the packed files (not itself in the index). */
export const MANIFEST_NAME = 'manifest.jsonl';

export class Device {
  constructor(readonly dataRoot: string) {}

  bundle(name: string): DeviceBundle {
    return new DeviceBundle(this.dataRoot, name);
  }

  /** The names of the folders under the data root, sorted. */
  async bundleNames(): Promise<string[]> {
    const entries = await readdir(this.dataRoot, { withFileTypes: true }).catch(() => []);
    return entries
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  }
}

export class DeviceBundle {
  readonly paths: BundlePaths;

  constructor(
    readonly dataRoot: string,
    readonly name: string,
  ) {
    this.paths = bundlePaths(dataRoot, name);
  }

  profile(): Promise<LoadedBundle> {
    return loadBundle(this.dataRoot, this.name);
  }

  install(info: BundleInstall): Promise<void> {
    return installBundle(this.dataRoot, this.name, info);
  }

  /** Backup: the folder one session packs this bundle into. */
  packDir(sessionId: string): string {
    return `${this.paths.backupTemp}/${sessionId}`;
  }

  /** Restore: the tool's files for one session, and the tree being built from them. */
  restoreDir(sessionId: string): string {
    return `${this.paths.restoreTemp}/${sessionId}`;
  }
}
