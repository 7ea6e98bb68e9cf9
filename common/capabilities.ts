/** The capability file of api.md §8, defined once: written by backup, validated by restore. */
import { z } from 'zod';

export const BACKUP_VERSION = '16.0';

export const BundleInfoSchema = z.object({
  name: z.string().min(1),
  appIndex: z.number().int().nonnegative(),
  versionCode: z.number().int().nonnegative(),
  versionName: z.string(),
  spaceOccupied: z.number().nonnegative(),
  increSpaceOccupied: z.number().nonnegative().optional(),
  allToBackup: z.boolean(),
  fullBackupOnly: z.boolean(),
  extensionName: z.string(),
  restoreDeps: z.string(),
  supportScene: z.string(),
  extraInfo: z.unknown(),
  needToInstall: z.boolean(),
});
export type BundleInfo = z.infer<typeof BundleInfoSchema>;

export const CapabilitiesSchema = z.object({
  backupVersion: z.string(),
  systemFullName: z.string(),
  deviceType: z.string(),
  bundleInfos: z.array(BundleInfoSchema),
});
export type Capabilities = z.infer<typeof CapabilitiesSchema>;
