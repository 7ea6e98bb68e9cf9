/**
 * The stored layout of one backup session in a snapshot, relative to the
 * snapshot's root (restic runs in the staging folder and backs up `.`, so
 * every snapshot has the same paths and dedups against the others):
 *
 *   /backup_set.json                the session summary (an increment names its base by snapshot)
 *   /capabilities.json              the device's capabilities, as the set holds them
 *   /<bundle>/manage.json           the bundle's index: every slice and big file with its entries
 *   /<bundle>/manifest.jsonl        the bundle's full manifest (incremental sessions)
 *   /<bundle>/data/<entry path>     every entry of the index as a file or folder, mode and mtime kept
 *
 * Entries are stored as files, not as the tar slices they were handed over
 * in: content-defined chunking then finds a changed small file as one new
 * blob, where a re-made slice shifts every later byte. Slices are re-made
 * from these files and the index at restore (materialize.ts).
 */
import { z } from 'zod';

export const SET_SUMMARY = 'backup_set.json';
export const SET_CAPABILITIES = 'capabilities.json';
export const SET_MANIFEST = 'manifest.jsonl';
export const INDEX_FILE = 'manage.json';
export const DATA_DIR = 'data';

const RESERVED = new Set([SET_SUMMARY, SET_CAPABILITIES]);
const BUNDLE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** Why `name` cannot be a bundle folder of a snapshot, or undefined. */
export function bundleNameProblem(name: string): string | undefined {
  if (!BUNDLE_NAME.test(name) || name.includes('..')) return `"${name}" is not a bundle name`;
  if (RESERVED.has(name)) return `a bundle may not be named ${name}`;
  return undefined;
}

/** The parts of backup_set.json this library reads; everything else is carried as it is. */
export const SetSummarySchema = z
  .object({
    version: z.literal(1),
    sessionId: z.string().min(1),
    kind: z.enum(['backup', 'incremental']),
    createdAt: z.string(),
    time: z.number().optional(),
    base: z.string().optional(),
    /** The base set's path relative to this set's folder (written beside the absolute `base`). */
    baseRelative: z.string().optional(),
    /** In a snapshot: the base's snapshot ID (a hint) and session ID (what resolves it). */
    baseSnapshot: z.string().optional(),
    baseSession: z.string().optional(),
    bundles: z.array(z.object({ bundleName: z.string(), state: z.string() }).passthrough()),
  })
  .passthrough();
export type SetSummary = z.infer<typeof SetSummarySchema>;

export const bundleDataPath = (bundle: string) => `/${bundle}/${DATA_DIR}`;
