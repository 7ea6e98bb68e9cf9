/** What packBundle takes and answers, and the limits and constants of the packed form. */
import { PACK_LIMITS } from '../../common/device.js';
import type { ManifestEntry } from '../../common/manifest.js';
import type { WalkProfile } from '../walk.js';

export type PackLimits = { -readonly [K in keyof typeof PACK_LIMITS]: number };

/**
 * - verify: a resumed run re-checks the outputs an earlier attempt completed;
 * - scan: it walks past the entries those outputs already hold;
 * - pack: packing new entries.
 */
export type PackPhase = 'verify' | 'scan' | 'pack';

export interface PackProgress {
  /** Files and bytes packed so far (kept outputs of an earlier attempt included). */
  files: number;
  bytes: number;
  phase: PackPhase;
  /**
   * Completed outputs (slices and big files) a retried attempt would keep.
   * During 'verify', the number of earlier outputs re-checked so far.
   */
  durable: number;
}

export interface PackOptions {
  bundleName: string;
  dataDir: string;
  outDir: string;
  profile: WalkProfile;
  onProgress?: (p: PackProgress) => void;
  signal?: AbortSignal;
  /** Overrides of PACK_LIMITS (tests use small ones). */
  limits?: Partial<PackLimits>;
  /**
   * Keep what an earlier, interrupted run into the same outDir completed and
   * pack only the rest. Default false: empty outDir and start over.
   */
  resume?: boolean;
  /**
   * The previous backup's manifest entries (readManifest(...).entries): pack
   * only what is new or changed since, and record what was deleted.
   */
  base?: Map<string, ManifestEntry>;
  /**
   * SHA-256 of the base manifest's bytes (readManifest(...).digest), which
   * stands for the base in the resume config: cheaper than a digest of every
   * entry. Without it the entries are digested.
   */
  baseDigest?: string;
  /** The base backup's time (its manifest header's `time`, seconds), recorded as `incremental.baseTime`. Default 0. */
  baseTime?: number;
  /** Where to write the new full manifest (atomically, 0600). Works for full backups too. */
  manifestPath?: string;
  /** This backup's time for the manifest header, seconds since the epoch. Default: now. */
  time?: number;
}

export interface PackSummary {
  files: number;
  dirs: number;
  bytes: number;
  /** Number of HandedFile records (slices and big files), not counting manage.json. */
  handOver: number;
  /** Those files in hand-over order, what the hand-over needs of each: it need not read the index. */
  handed: Array<{ uri: string; size: number }>;
  skipped: number;
  indexPath: string;
  /** Only with `resume`: what was kept from an earlier attempt, or why it was not. */
  resumed?: { kept: number; reused: number } | { restartedBecause: string };
  /*
   * The next three are there when the run is part of an incremental chain
   * (`base` or `manifestPath` given), so that plain full runs keep their summary.
   */
  /** Files packed (handed over): equals `files`. */
  changed?: number;
  /** Files not packed because the base holds their bytes (0 without a base); touched files included. */
  unchanged?: number;
  /** Records in `incremental.deleted` (0 without a base). */
  deleted?: number;
  /** Where the new manifest was written, with `manifestPath`. */
  manifestPath?: string;
}

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;
/**
 * A slice is written this much at a time: each open slice holds a buffer this size and one more while
 * the last is written, so eight packs at once hold sixteen (a MiB each cost 6 MiB more of the worker's
 * peak, and was not measurably faster).
 */
export const WRITE_BATCH_BYTES = 256 * 1024;
/** Files up to this size are read whole by one synchronous read; larger ones are streamed. */
export const WHOLE_READ_BYTES = 256 * 1024;

/** What a file looked like when it was opened for packing. */
export interface OpenedStat {
  size: number;
  mode: number;
  mtimeMs: number;
  ctimeMs: number;
}
