/**
 * A backup set on disk, as `ohbackup backup` writes it: every handed-over file
 * under `<bundle>/<uri>`, the capability file, and `backup_set.json`, the
 * session summary; in an incremental set also `<bundle>/manifest.jsonl`.
 * These are its names, and the reader of its summary.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { BundleOutcome } from '../../common/session.js';

export const SET_SUMMARY = 'backup_set.json';
export const SET_CAPABILITIES = 'capabilities.json';
/** `<bundle>/manifest.jsonl` in an incremental set: the bundle's full manifest, the base of the next increment. */
export const SET_MANIFEST = 'manifest.jsonl';
/** While a backup writes the set: the last session event it holds (SessionOptions.cursorFile), for `--attach`. */
export const SET_CURSOR = '.cursor';

export interface BackupSetSummary {
  version: 1;
  sessionId: string;
  kind: 'backup' | 'incremental';
  createdAt: string;
  /**
   * The session's start, seconds since the epoch: the `lastIncrementalTime` of
   * an increment based on this set. Sets written before it existed: read
   * Date.parse(createdAt) / 1000 instead.
   */
  time: number;
  /** An increment's base set (absolute path): restore it (and its bases) first. */
  base?: string;
  /** The same base relative to this set's folder: found first, so a chain moved as a whole still resolves. */
  baseRelative?: string;
  bundles: BundleOutcome[];
  /**
   * Whether the set holds everything its backup was asked for: false while
   * the backup runs, after one that stopped (killed, interrupted, the session
   * failed) and when some bundle failed. Sets written before it existed: absent (read as true).
   */
  complete?: boolean;
  /** Why the set is not complete. */
  why?: string;
  /** The bundles not backed up completely (state other than done). */
  failed?: string[];
  /** While the backup runs: the process writing the set (`--attach` refuses a live one). */
  writer?: { pid: number; host: string };
}

/** What a set's backup_set.json says, as the chain of increments needs it. */
export interface SetInfo {
  /** The set folder, absolute. */
  dir: string;
  kind: string;
  /** The session's start, epoch seconds (`time`, else from `createdAt`); undefined when neither is readable. */
  time?: number;
  /** The base set named by an increment, absolute (a relative one is taken from the set's folder). */
  base?: string;
  /** Bundles held completely (state `done`). */
  done: string[];
  /** False when its summary says the set is not complete (BackupSetSummary.complete), with why. */
  complete: boolean;
  why?: string;
}

/** Reads `<dir>/backup_set.json`; throws an Error saying why `dir` is not a backup set. */
export function readSetInfo(dir: string): SetInfo {
  const abs = path.resolve(dir);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path.join(abs, SET_SUMMARY), 'utf8'));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `it has no ${SET_SUMMARY}` : `its ${SET_SUMMARY} cannot be read: ${(err as Error).message}`;
    throw new Error(`${abs} is not a backup set (${why})`);
  }
  const summary = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  if (!Array.isArray(summary.bundles)) throw new Error(`${abs} is not a backup set (its ${SET_SUMMARY} lists no bundles)`);
  const done = (summary.bundles as Array<{ bundleName?: unknown; state?: unknown } | null>)
    .filter((b) => b && typeof b.bundleName === 'string' && b.state === 'done')
    .map((b) => b!.bundleName as string);
  let time: number | undefined;
  if (typeof summary.time === 'number' && Number.isFinite(summary.time) && summary.time >= 0) time = Math.floor(summary.time);
  else if (typeof summary.createdAt === 'string' && Number.isFinite(Date.parse(summary.createdAt)))
    time = Math.max(0, Math.floor(Date.parse(summary.createdAt) / 1000));
  if (summary.base !== undefined && (typeof summary.base !== 'string' || summary.base === '')) {
    throw new Error(`${abs}: the base named in its ${SET_SUMMARY} is not a folder path`);
  }
  let base = typeof summary.base === 'string' ? path.resolve(abs, summary.base) : undefined;
  if (base && typeof summary.baseRelative === 'string' && summary.baseRelative !== '') {
    // The relative path wins when it leads to a set (the chain was moved together); else the absolute one.
    const moved = path.resolve(abs, summary.baseRelative);
    if (existsSync(path.join(moved, SET_SUMMARY))) base = moved;
  }
  const complete = summary.complete !== false;
  const why = !complete ? (typeof summary.why === 'string' ? summary.why : 'its backup did not complete') : undefined;
  return { dir: abs, kind: typeof summary.kind === 'string' ? summary.kind : 'backup', time, base, done, complete, ...(why ? { why } : {}) };
}
