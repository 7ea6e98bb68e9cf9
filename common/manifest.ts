/**
 * The incremental manifest (api.md §5 IncrementalBackupSession, §9): every
 * current file and folder of a bundle with path, kind, mode, size, mtime and
 * SHA-256, kept by the tool and handed back as the base of the next increment.
 * Pure: schemas and the error class only, no I/O (engine/formats/manifest.ts reads
 * and writes it), so workflow code may import it.
 *
 * Format: JSON Lines (UTF-8, '\n' after every line).
 * - Line 1, the header:
 *   `{"format":"ohbackup-manifest","version":1,"bundleName":…,"time":<epoch s>,"entries":<count>}`
 *   (the writer patches the count in place once the entries are streamed, so
 *   the number may be followed by spaces before the closing brace: plain JSON
 *   whitespace).
 * - Then one JSON object per entry, in walk order:
 *   `{"path","kind":"file"|"dir","mode","size","mtimeMs","sha256"}`. Paths are
 *   relative to the bundle's data/ folder and '/'-separated; a newline or any
 *   other control character in a name is escaped by JSON, so an entry is always
 *   exactly one line. Folders have size 0 and sha256 ''.
 * Readers ignore unknown keys (additions within version 1 stay readable).
 */
import { z } from 'zod';
import { ErrorCode } from './errors.js';

export const MANIFEST_FORMAT = 'ohbackup-manifest';
export const MANIFEST_VERSION = 1;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** An empty, '.' or '..' segment anywhere in a path that does not start with '/'. */
const BAD_SEGMENT = /(?:^|\/)\.{0,2}(?:\/|$)/;

/** Why `p` is not a plain relative '/'-separated path, or undefined when it is one. */
export function manifestPathProblem(p: string): string | undefined {
  // The usual path, checked without splitting it (one per manifest line, read and written).
  if (p !== '' && !p.includes('\0') && p.charCodeAt(0) !== 0x2f && !BAD_SEGMENT.test(p)) return undefined;
  if (p === '') return 'empty path';
  if (p.includes('\0')) return 'NUL in path';
  if (p.startsWith('/')) return 'absolute path';
  for (const s of p.split('/')) {
    if (s === '') return 'empty path segment';
    if (s === '.' || s === '..') return `'${s}' segment`;
  }
  return undefined;
}

export const ManifestEntrySchema = z
  .object({
    /** POSIX path relative to the bundle's data/ folder. */
    path: z.string(),
    kind: z.enum(['file', 'dir']),
    /** Permission bits only (mode & 0o7777). */
    mode: z.number().int().min(0).max(0o7777),
    /** Bytes; 0 for folders. */
    size: z.number().int().nonnegative(),
    /** Modification time, milliseconds since the epoch (as stat reports it, fractions included). */
    mtimeMs: z.number(),
    /** Hex SHA-256 of the file's bytes; '' for folders. */
    sha256: z.string(),
  })
  .superRefine((e, ctx) => {
    const why = manifestPathProblem(e.path);
    if (why) ctx.addIssue({ code: 'custom', path: ['path'], message: why });
    if (e.kind === 'file' && !SHA256_HEX.test(e.sha256)) {
      ctx.addIssue({ code: 'custom', path: ['sha256'], message: 'a file needs a hex SHA-256' });
    }
    if (e.kind === 'dir' && (e.size !== 0 || e.sha256 !== '')) {
      ctx.addIssue({ code: 'custom', path: ['size'], message: "a folder has size 0 and sha256 ''" });
    }
  });
export type ManifestEntry = z.infer<typeof ManifestEntrySchema>;

/**
 * ManifestEntrySchema.safeParse, fast for the usual entry: a plain object the
 * schema accepts is checked by hand (a base manifest has one per file, and
 * zod costs some microseconds each); anything else gets the schema's own
 * verdict and message.
 */
export function parseManifestEntry(value: unknown): ReturnType<typeof ManifestEntrySchema.safeParse> {
  if (typeof value === 'object' && value !== null) {
    const { path, kind, mode, size, mtimeMs, sha256 } = value as Record<string, unknown>;
    if (
      typeof path === 'string' &&
      (kind === 'file' || kind === 'dir') &&
      typeof mode === 'number' &&
      Number.isSafeInteger(mode) &&
      mode >= 0 &&
      mode <= 0o7777 &&
      typeof size === 'number' &&
      Number.isSafeInteger(size) &&
      size >= 0 &&
      typeof mtimeMs === 'number' &&
      Number.isFinite(mtimeMs) &&
      typeof sha256 === 'string' &&
      (kind === 'file' ? SHA256_HEX.test(sha256) : size === 0 && sha256 === '') &&
      manifestPathProblem(path) === undefined
    ) {
      return { success: true, data: { path, kind, mode, size, mtimeMs, sha256 } };
    }
  }
  return ManifestEntrySchema.safeParse(value);
}

export const ManifestHeaderSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(MANIFEST_VERSION),
  bundleName: z.string().min(1),
  /** When the backup this manifest describes was taken, seconds since the epoch (the next increment's lastIncrementalTime). */
  time: z.number().int().nonnegative(),
  /** Number of entry lines that follow. */
  entries: z.number().int().nonnegative(),
});
export type ManifestHeader = z.infer<typeof ManifestHeaderSchema>;

/** What a writer is told; format, version and the entry count are its own. */
export type ManifestHeaderInit = Pick<ManifestHeader, 'bundleName' | 'time'>;

/** A manifest that cannot be used: bad header, bad line, duplicate path, wrong count. Code 13900020. */
export class ManifestInvalid extends Error {
  readonly code = ErrorCode.INVALID_ARGUMENT;
  /** 1-based line number the problem was found on, when it belongs to one line. */
  readonly line: number | undefined;
  constructor(message: string, line?: number) {
    super(line === undefined ? `invalid manifest: ${message}` : `invalid manifest, line ${line}: ${message}`);
    this.name = 'ManifestInvalid';
    this.line = line;
  }
}

/** The first three issues of a failed parse, as one readable string. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}
