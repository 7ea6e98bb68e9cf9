/** The manifest and incremental bookkeeping of one pack run. */
import type { Deleted, IndexEntry } from '../../common/manageIndex.js';
import type { ManifestEntry } from '../../common/manifest.js';
import { BUFFERED, type ManifestWriter } from '../formats/manifest.js';
import { ancestors } from '../fsx.js';

/**
 * Every entry the restore of this backup will hold goes through `record`, in
 * walk order: written to the new manifest, and (with a base) remembered, to
 * tell the base entries that are gone. Files with the base's bytes but new
 * metadata are the increment's `touched`.
 */
export class IncrementRecorder {
  readonly touched: IndexEntry[] = [];
  unchanged = 0;
  /** Kinds of the recorded entries (only with a base: for the deletions). */
  readonly #present?: Map<string, IndexEntry['kind']>;

  constructor(
    readonly base: Map<string, ManifestEntry> | undefined,
    readonly writer: ManifestWriter | undefined,
  ) {
    if (base) this.#present = new Map();
  }

  /**
   * Records `e`. Not an async function (an increment records every file of its bundle): the promise is the
   * manifest writer's, BUFFERED unless its buffer went out to disk.
   */
  record(e: IndexEntry): Promise<void> {
    const written = this.writer ? this.writer.add(e) : BUFFERED;
    this.#present?.set(e.path, e.kind);
    return written;
  }

  /** A file whose bytes are the base's: recorded with the base's hash and its current mode and mtime. */
  recordUnchanged(meta: { path: string; mode: number; mtimeMs: number }, b: ManifestEntry): Promise<void> {
    const e: IndexEntry = { path: meta.path, kind: 'file', size: b.size, mode: meta.mode, mtimeMs: meta.mtimeMs, sha256: b.sha256 };
    if (e.mode !== b.mode || e.mtimeMs !== b.mtimeMs) this.touched.push(e);
    this.unchanged++;
    return this.record(e);
  }

  /** Base entries not recorded as the same kind; below a deleted folder only the folder. */
  deletions(): Deleted[] {
    if (!this.base || !this.#present) return [];
    const gone: Deleted[] = [];
    const goneDirs = new Set<string>();
    for (const [p, b] of this.base) {
      if (this.#present.get(p) === b.kind) continue;
      gone.push({ path: p, kind: b.kind });
      if (b.kind === 'dir') goneDirs.add(p);
    }
    const underGoneDir = (p: string) => {
      for (const a of ancestors(p)) if (goneDirs.has(a)) return true;
      return false;
    };
    return gone.filter((d) => !underGoneDir(d.path));
  }
}
