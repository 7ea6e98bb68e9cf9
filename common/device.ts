/**
 * The device layout of api.md §7: schemas for bundle.json and
 * backup_config.json, and the paths of a bundle's folders. Pure: no I/O.
 */
import { z } from 'zod';

/** Hook commands a bundle may declare in bundle.json `extension` (run by the worker via /bin/sh). */
export const HookNames = [
  'onBackup',
  'onBackupEx',
  'onRestore',
  'onRestoreEx',
  'getBackupInfo',
  'getBackupCompatibilityInfo',
  'getRestoreCompatibilityInfo',
  'onProcess',
  'onRelease',
] as const;
export type HookName = (typeof HookNames)[number];

export const BundleJsonSchema = z.object({
  name: z.string().min(1),
  versionCode: z.number().int().nonnegative().default(0),
  versionName: z.string().default(''),
  appIndex: z.number().int().nonnegative().default(0),
  extension: z.partialRecord(z.enum(HookNames), z.string()).optional(),
});
export type BundleJson = z.infer<typeof BundleJsonSchema>;

export const BackupConfigSchema = z.object({
  allowToBackupRestore: z.boolean().default(false),
  includes: z.array(z.string()).optional(),
  excludes: z.array(z.string()).default([]),
  fullBackupOnly: z.boolean().default(false),
  restoreDeps: z.string().default(''),
  supportScene: z.string().default(''),
  extraInfo: z.record(z.string(), z.unknown()).default({}),
});
export type BackupConfig = z.infer<typeof BackupConfigSchema>;

/** A bundle name as the reference allows it: reverse-DNS-like, never a path. */
export const BundleNameSchema = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, 'a bundle name is letters, digits, "_", "." and "-", and not a path')
  .refine((s) => s !== '.' && s !== '..' && !s.includes('..'), 'a bundle name may not contain ".."');

export interface BundlePaths {
  root: string;
  bundleJson: string;
  backupConfig: string;
  data: string;
  backupTemp: string;
  restoreTemp: string;
}

/** Joins with '/', which is all this project targets (Linux); kept pure so workflows may use it. */
/**
 * A session ID becomes a workflow ID and a folder name (backup/backup/<session>/,
 * the tool's transfer/<session>/): never a path. Checked by the tool library and
 * again by the worker, which must not trust a session workflow started by hand.
 */
export const SessionIdSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/, 'a session ID is letters, digits, "_", ".", ":" and "-", and not a path')
  .refine((s) => !s.includes('..'), 'a session ID may not contain ".."');

export function bundlePaths(dataRoot: string, bundleName: string): BundlePaths {
  const root = `${dataRoot.replace(/\/+$/, '')}/${bundleName}`;
  return {
    root,
    bundleJson: `${root}/bundle.json`,
    backupConfig: `${root}/backup_config.json`,
    data: `${root}/data`,
    backupTemp: `${root}/backup/backup`,
    restoreTemp: `${root}/backup/restore`,
  };
}

/** Big files are handed over alone; everything else goes into tar slices (api.md §9). */
export const PACK_LIMITS = {
  bigFileBytes: 2 * 1024 * 1024,
  sliceBytes: 100 * 1024 * 1024,
  sliceEntries: 6000,
} as const;
