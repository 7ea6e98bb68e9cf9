/** What applyRestore takes and answers, its refusal, and the modes and flags of the tree it builds. */
import { constants as fsc } from 'node:fs';
import { ErrorCode } from '../../common/errors.js';

export interface ApplyRestoreOptions {
  bundleName: string;
  /** Where the tool wrote the bundle's files: manage.json plus every uri it lists. */
  restoreDir: string;
  /** The bundle's data folder (<bundle>/data) — the only place restore may change. */
  dataDir: string;
  /** A fresh folder for building the new tree (inside the bundle's backup/restore temp area; created/emptied here). */
  stagingDir: string;
  /**
   * 'apply': swap the verified tree into dataDir; 'tempOnly' (fullBackupOnly profiles): leave the verified tree in stagingDir;
   * 'merge': an increment — the current dataDir plus the increment's changes and deletions, swapped into dataDir.
   */
  mode: 'apply' | 'tempOnly' | 'merge' | 'byIndex';
  /**
   * Only with 'byIndex', which the index decides once it is read (so that no caller reads a big index just to
   * choose): an increment is merged, a full set applied; with this, a full set is left here instead ('tempOnly',
   * for a fullBackupOnly profile) while an increment still merges in stagingDir.
   */
  tempOnlyStagingDir?: string;
  /** Keep the tree dataDir held before under this name (a sibling of dataDir) instead of removing it. */
  keepPreviousAs?: string;
  /**
   * Where the apply notes, just before its swap, the tree it swaps in and its result (a file outside
   * restoreDir and the trees, removed with the session's folder). A retry after the swap (the big files
   * now live in the applied tree, not in restoreDir) answers that result instead of applying again.
   */
  appliedRecord?: string;
  signal?: AbortSignal;
  onProgress?: (p: { files: number; bytes: number }) => void;
}

export interface ApplyRestoreResult {
  files: number;
  dirs: number;
  bytes: number;
  appliedTo: string;
  /** Only for 'merge': files carried over from dataDir (hard-linked, or copied), deletions applied, touched files re-stamped. */
  merged?: { linked: number; copied: number; deleted: number; touched: number };
}

/** The restore files cannot be applied; `code` is the reference's error code (13900020 or 13500008). */
export class RestoreRejected extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'RestoreRejected';
  }
}

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;
export const ROOT_MODE = 0o700;
/** Only permission bits are restored: set-uid, set-gid and sticky are dropped. */
export const PERM_MASK = 0o777;
export const CREATE_FLAGS = fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY | fsc.O_NOFOLLOW;
export const READ_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;

/** The restore files are not a valid archive of what the index lists (13500008). */
export function untar(message: string): RestoreRejected {
  return new RestoreRejected(ErrorCode.UNTAR_FAILED, message);
}

/** The index, or the call, is not acceptable (13900020). */
export function invalid(message: string): RestoreRejected {
  return new RestoreRejected(ErrorCode.INVALID_ARGUMENT, message);
}
