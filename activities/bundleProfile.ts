/** Reads a bundle's bundle.json and backup_config.json, answering 13500001 for what cannot be backed up. */
import { readFile } from 'node:fs/promises';
import { BackupConfigSchema, BundleJsonSchema, BundleNameSchema, bundlePaths, type BackupConfig, type BundleJson } from '../common/device.js';
import { ErrorCode, errorInfo, type ErrorInfo } from '../common/errors.js';

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
