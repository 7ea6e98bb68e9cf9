/**
 * The bundle's index, `manage.json` (api.md §9): every handed-over file and
 * every entry it holds, each with path, size, mode, mtime and SHA-256.
 */
import { z } from 'zod';
import { URI_PATTERN } from './rules.js';

export const INDEX_URI = 'manage.json';
export const INDEX_VERSION = 1;

export const IndexEntrySchema = z.object({
  /** POSIX path relative to the bundle's data/ folder. */
  path: z.string(),
  kind: z.enum(['file', 'dir']),
  size: z.number().int().nonnegative(),
  /** Permission bits only (mode & 0o7777). */
  mode: z.number().int().nonnegative(),
  /** Modification time, milliseconds since the epoch. */
  mtimeMs: z.number(),
  /** Hex SHA-256 of the file's bytes; '' for folders. */
  sha256: z.string(),
});
export type IndexEntry = z.infer<typeof IndexEntrySchema>;

export const HandedFileSchema = z.object({
  /** The FileMeta uri the tool sees: only [0-9a-zA-Z_.]. */
  uri: z.string().regex(URI_PATTERN),
  kind: z.enum(['tar', 'file']),
  size: z.number().int().nonnegative(),
  sha256: z.string(),
  entries: z.array(IndexEntrySchema),
});
export type HandedFile = z.infer<typeof HandedFileSchema>;

export const SkippedSchema = z.object({ path: z.string(), reason: z.string() });
export type Skipped = z.infer<typeof SkippedSchema>;

export const DeletedSchema = z.object({ path: z.string(), kind: z.enum(['file', 'dir']) });
export type Deleted = z.infer<typeof DeletedSchema>;

/**
 * Present only in an increment (an incremental backup's index). Everything
 * else in the index then describes the new and changed files plus every
 * current folder; the rest of the tree is the base backup's.
 */
export const IncrementalSchema = z.object({
  /** The base backup's time (its manifest's header time), seconds since the epoch. */
  baseTime: z.number(),
  /**
   * Files and folders of the base that are gone (or changed kind). A folder
   * stands for everything below it, which is not listed again.
   */
  deleted: z.array(DeletedSchema),
  /**
   * Files whose content is the base's (same SHA-256) but whose mode or mtime
   * changed: not handed over, their metadata is applied on restore.
   */
  touched: z.array(IndexEntrySchema).optional(),
});
export type Incremental = z.infer<typeof IncrementalSchema>;

export const ManageIndexSchema = z.object({
  version: z.literal(INDEX_VERSION),
  bundleName: z.string(),
  createdAt: z.string(),
  files: z.array(HandedFileSchema),
  skipped: z.array(SkippedSchema),
  totals: z.object({ files: z.number(), dirs: z.number(), bytes: z.number() }),
  /** Only in an increment; optional, so version-1 readers of full backups are unaffected. */
  incremental: IncrementalSchema.optional(),
});
export type ManageIndex = z.infer<typeof ManageIndexSchema>;
