/**
 * Resuming a pack (`resume: true`, a retried attempt after a crash or SIGKILL):
 * the sidecars `<uri>.done.json` of completed outputs, the digest that ties them
 * to one configuration, the state a resumed run starts from, and the
 * ResumeCursor that moves the walk past what the kept outputs cover.
 * See docs/design/packing.md.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { HandedFileSchema, SkippedSchema, type HandedFile, type IndexEntry, type Skipped } from '../../common/manageIndex.js';
import type { ManifestEntry } from '../../common/manifest.js';
import { writeAtomically } from '../fsx.js';
import type { WalkEntry, WalkItem } from '../walk.js';
import type { IncrementRecorder } from './increment.js';
import { DIR_MODE, type PackLimits, type PackOptions } from './options.js';
import type { PackProgressMeter } from './progress.js';
import { hashOpenFile, openSource } from './sources.js';

// ---- Resuming ---------------------------------------------------------------

const DONE_SUFFIX = '.done.json';
const DONE_VERSION = 1;
const OUTPUT_NAME = /^(?:part\.(0|[1-9]\d*)\.tar|file\.(0|[1-9]\d*))$/;

/**
 * The sidecar `<uri>.done.json` of a completed output. Metadata only.
 * - handed: the output's record in the index, exactly as the index will hold it;
 * - pos: its place in the index's list of files (slices are listed when they
 *   are opened, big files when they are complete, as in an uninterrupted run);
 * - skipped: for a slice, the skipped items that come after the previous
 *   slice's last entry and up to this slice's last entry, in walk order
 *   (so the sidecars of slices 0..k together hold every skipped item up to
 *   slice k's last entry); empty for a big file;
 * - config: a digest of what decides the output (bundle, data folder,
 *   profile, limits); a sidecar made under another one is not used.
 * The walk position an output covers is its last entry's path.
 */
const DoneSchema = z.object({
  version: z.literal(DONE_VERSION),
  config: z.string(),
  pos: z.number().int().nonnegative(),
  skipped: z.array(SkippedSchema),
  handed: HandedFileSchema,
});
export type Done = z.infer<typeof DoneSchema>;

export function configDigest(opts: PackOptions, limits: PackLimits): string {
  const key = JSON.stringify({
    bundleName: opts.bundleName,
    dataDir: path.resolve(opts.dataDir),
    includes: opts.profile.includes ?? null,
    excludes: opts.profile.excludes,
    limits: [limits.bigFileBytes, limits.sliceBytes, limits.sliceEntries],
    // Outputs of an incremental run depend on its base; full runs keep the digest they always had.
    ...(opts.base ? { base: opts.baseDigest ?? baseDigest(opts.base) } : {}),
  });
  return createHash('sha256').update(key).digest('hex');
}

function baseDigest(base: Map<string, ManifestEntry>): string {
  // One hash call over all the lines: the same digest as one per line, without a call per entry.
  let lines = '';
  for (const e of base.values()) lines += `${JSON.stringify([e.path, e.kind, e.mode, e.size, e.mtimeMs, e.sha256])}\n`;
  return createHash('sha256').update(lines).digest('hex');
}

/** Key ordering paths the way walkBundle yields them: per component, by UTF-8 bytes, a folder before its contents. */
export function walkKey(p: string): Buffer {
  return Buffer.from(p.replaceAll('/', '\0'));
}

export function lastPath(handed: HandedFile): string {
  return handed.entries.at(-1)!.path;
}

export async function writeDone(outDir: string, done: Omit<Done, 'version'>): Promise<void> {
  // Atomic but not synced: a sidecar lost to a machine crash only means repacking that output.
  await writeAtomically(path.join(outDir, done.handed.uri + DONE_SUFFIX), JSON.stringify({ version: DONE_VERSION, ...done }), false);
}

/** What a resumed run starts from. */
export interface ResumeState {
  /** Index records of the kept outputs, in index order. */
  files: HandedFile[];
  skipped: Skipped[];
  /** Walk position they cover: entries and skipped items up to here are done. */
  after?: string;
  parts: number;
  bigs: number;
  /** Big files completed beyond `after`, numbered on from `bigs`, to re-use when the walk meets them again. */
  pending: Done[];
}

type Verdict<T> = { ok: true; value: T } | { ok: false; why: string };

/**
 * Reads and checks the sidecars in outDir and deletes every other file there.
 * Returns why not when something does not add up; the caller then starts clean.
 */
async function loadResumeState(outDir: string, config: string, progress: PackProgressMeter, signal?: AbortSignal): Promise<Verdict<ResumeState>> {
  const names = await fsp.readdir(outDir);
  const partsByN = new Map<number, Done>();
  const bigsByN = new Map<number, Done>();
  const nameSet = new Set(names);
  for (const name of names) {
    if (!name.endsWith(DONE_SUFFIX)) continue;
    const uri = name.slice(0, -DONE_SUFFIX.length);
    const m = OUTPUT_NAME.exec(uri);
    if (!m) continue; // a stray file: deleted below
    let done: Done;
    try {
      done = DoneSchema.parse(JSON.parse(await fsp.readFile(path.join(outDir, name), 'utf8')));
    } catch (err) {
      return { ok: false, why: `${name} is unreadable: ${(err as Error).message}` };
    }
    const h = done.handed;
    if (done.config !== config) return { ok: false, why: `${name} was made with another profile or limits` };
    if (h.uri !== uri) return { ok: false, why: `${name} describes ${h.uri}` };
    if (!nameSet.has(uri)) return { ok: false, why: `${uri} is missing` };
    if (m[1] !== undefined) {
      if (h.kind !== 'tar' || h.entries.length === 0) return { ok: false, why: `${name} is not a slice's` };
      partsByN.set(Number(m[1]), done);
    } else {
      if (h.kind !== 'file' || h.entries.length !== 1 || h.entries[0]!.kind !== 'file' || done.skipped.length > 0) {
        return { ok: false, why: `${name} is not a big file's` };
      }
      bigsByN.set(Number(m[2]), done);
    }
  }
  // Outputs complete in order: the sidecars must be numbered without gaps.
  const inOrder = (byN: Map<number, Done>): Done[] | undefined => {
    const list = Array.from({ length: byN.size }, (_, i) => byN.get(i));
    return list.every((d) => d !== undefined) ? (list as Done[]) : undefined;
  };
  const parts = inOrder(partsByN);
  const bigs = inOrder(bigsByN);
  if (!parts || !bigs) return { ok: false, why: 'completed outputs are not numbered 0, 1, 2…' };

  const lastPart = parts.at(-1);
  const after = lastPart && lastPath(lastPart.handed);
  const afterKey = after === undefined ? undefined : walkKey(after);
  const covered = (p: string) => afterKey !== undefined && Buffer.compare(walkKey(p), afterKey) <= 0;
  const keptBigs = bigs.filter((b) => covered(lastPath(b.handed)));
  const pending = bigs.slice(keptBigs.length);
  if (pending.some((b) => covered(lastPath(b.handed)))) return { ok: false, why: 'big files out of walk order' };
  const kept = [...parts, ...keptBigs].sort((a, b) => a.pos - b.pos);
  if (kept.some((d, i) => d.pos !== i)) return { ok: false, why: 'outputs out of index order' };
  const skipped = parts.flatMap((p) => p.skipped);
  if (!skipped.every((s) => covered(s.path))) return { ok: false, why: 'skipped items beyond the last slice' };
  for (let i = 1; i < skipped.length; i++) {
    if (Buffer.compare(walkKey(skipped[i - 1]!.path), walkKey(skipped[i]!.path)) >= 0) return { ok: false, why: 'skipped items out of order' };
  }

  // Everything else is an output an attempt did not finish, a temporary file or a stale index.
  const keep = new Set([...kept, ...pending].flatMap((d) => [d.handed.uri, d.handed.uri + DONE_SUFFIX]));
  for (const name of names) {
    if (!keep.has(name)) await fsp.rm(path.join(outDir, name), { recursive: true, force: true });
  }

  // Re-check every kept output against its record: length and SHA-256.
  progress.phase = 'verify';
  for (const d of [...kept, ...pending]) {
    const p = path.join(outDir, d.handed.uri);
    const hash = createHash('sha256');
    try {
      const st = await fsp.lstat(p);
      if (!st.isFile() || st.size !== d.handed.size) return { ok: false, why: `${d.handed.uri} has ${st.size} bytes, not ${d.handed.size}` };
      for await (const chunk of createReadStream(p) as AsyncIterable<Buffer>) {
        signal?.throwIfAborted();
        hash.update(chunk);
        progress.tick();
      }
    } catch (err) {
      signal?.throwIfAborted();
      return { ok: false, why: `${d.handed.uri} cannot be read: ${(err as Error).message}` };
    }
    if (hash.digest('hex') !== d.handed.sha256) return { ok: false, why: `${d.handed.uri} does not match its SHA-256` };
    progress.durable++;
    progress.tick();
  }

  return {
    ok: true,
    value: {
      files: kept.map((d) => d.handed),
      skipped,
      after,
      parts: parts.length,
      bigs: keptBigs.length,
      pending,
    },
  };
}

/**
 * Makes outDir (0700) ready: with `resume`, keeps what the sidecars show an
 * earlier attempt completed; otherwise, or when they do not add up, empties it.
 */
export async function openOutDir(
  outDir: string,
  resume: boolean,
  config: string,
  progress: PackProgressMeter,
  signal?: AbortSignal,
): Promise<{ resumed?: ResumeState; restartedBecause?: string }> {
  await fsp.mkdir(outDir, { recursive: true, mode: DIR_MODE });
  await fsp.chmod(outDir, DIR_MODE);
  if (resume) {
    const verdict = await loadResumeState(outDir, config, progress, signal);
    if (verdict.ok) return { resumed: verdict.value };
    await emptyOutDir(outDir);
    return { restartedBecause: verdict.why };
  }
  await emptyOutDir(outDir);
  return {};
}

async function emptyOutDir(outDir: string): Promise<void> {
  for (const name of await fsp.readdir(outDir)) {
    await fsp.rm(path.join(outDir, name), { recursive: true, force: true });
  }
}

/**
 * Where a resumed walk stands against what an earlier attempt left: the walk
 * positions its kept outputs cover, their entries (recorded in walk order as
 * the walk passes their place), and the big files it completed beyond them,
 * re-used when the walk meets them again in the same place. Without a resume
 * it covers nothing and holds nothing.
 */
export class ResumeCursor {
  /** Big files re-used from the earlier attempt. */
  reused = 0;
  readonly #afterKey?: Buffer;
  readonly #pending: Done[];
  /** Entries of the kept outputs in walk order (only when recording). */
  readonly #keptEntries: IndexEntry[];
  #nextKept = 0;

  constructor(
    resumed: ResumeState | undefined,
    private readonly outDir: string,
    private readonly recorder: IncrementRecorder | undefined,
    private readonly base: Map<string, ManifestEntry> | undefined,
    private readonly progress: PackProgressMeter,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.#afterKey = resumed?.after === undefined ? undefined : walkKey(resumed.after);
    this.#pending = resumed?.pending ?? [];
    this.#keptEntries = recorder && resumed ? resumed.files.flatMap((f) => f.entries).sort((a, b) => Buffer.compare(walkKey(a.path), walkKey(b.path))) : [];
  }

  /** Nothing of an earlier attempt to cover, record or re-use: covers() and reusableBigFile() would answer false and undefined. */
  get holdsNothing(): boolean {
    return this.#afterKey === undefined && this.#pending.length === 0 && this.#nextKept >= this.#keptEntries.length;
  }

  /** Whether the kept outputs reach into the walk (the run starts by scanning past them). */
  get scanning(): boolean {
    return this.#afterKey !== undefined;
  }

  /**
   * Whether the walk item at `key` is one the kept outputs (or their skipped
   * lists) already hold, or one the earlier attempt passed over; either way
   * it is recorded. Beyond them, the kept entries still unrecorded are.
   */
  async covers(item: WalkItem, key: Buffer): Promise<boolean> {
    if (!this.#afterKey || Buffer.compare(key, this.#afterKey) > 0) {
      await this.#recordKeptBefore();
      return false;
    }
    if (!this.recorder) return true;
    await this.#recordKeptBefore(key);
    const k = this.#keptEntries[this.#nextKept];
    if (k && k.path === item.path) {
      this.#nextKept++;
      await this.recorder.record(k);
    } else if (item.type === 'entry') {
      await this.#recordPassedOver(item);
    }
    return true;
  }

  /**
   * The big file an earlier attempt completed at this walk item, to re-use;
   * undefined when there is none. Reaching a pending big file's place with
   * something else means the tree changed: they are all dropped.
   */
  async reusableBigFile(item: WalkItem, key: Buffer): Promise<Done | undefined> {
    const next = this.#pending[0];
    if (!next || Buffer.compare(key, walkKey(lastPath(next.handed))) < 0) return undefined;
    if (item.type === 'entry' && item.kind === 'file' && item.path === lastPath(next.handed)) {
      this.#pending.shift();
      this.reused++;
      return next;
    }
    await this.dropPending(); // big files would be numbered differently now
    return undefined;
  }

  /** Big files of the earlier attempt not met again in the same place are dropped (also when a new big file takes their number). */
  async dropPending(): Promise<void> {
    for (const d of this.#pending.splice(0)) {
      await fsp.rm(path.join(this.outDir, d.handed.uri + DONE_SUFFIX), { force: true });
      await fsp.rm(path.join(this.outDir, d.handed.uri), { force: true });
    }
  }

  /** The walk ended: pending big files go, and kept entries it no longer reached are recorded. */
  async finish(): Promise<void> {
    await this.dropPending();
    await this.#recordKeptBefore();
  }

  async #recordKeptBefore(key?: Buffer): Promise<void> {
    const kept = this.#keptEntries;
    while (this.#nextKept < kept.length && (key === undefined || Buffer.compare(walkKey(kept[this.#nextKept]!.path), key) < 0)) {
      await this.recorder!.record(kept[this.#nextKept++]!);
    }
  }

  /**
   * An entry an earlier attempt walked past without packing it: recorded as
   * what the restore will hold, which is the base's version.
   */
  async #recordPassedOver(item: WalkEntry): Promise<void> {
    const track = this.recorder!;
    const b = this.base?.get(item.path);
    if (b?.kind !== item.kind) return; // new since the base: in no output, so not in the restore
    if (b.kind === 'dir') return track.record(b);
    if (b.size === item.size && b.mtimeMs === item.mtimeMs) return track.recordUnchanged(item, b);
    const src = await openSource(item.absPath);
    if ('skip' in src) return track.record(b);
    try {
      if (src.size === b.size && (await hashOpenFile(src.fh, src.size, this.progress, this.signal)) === b.sha256) {
        return track.recordUnchanged({ path: item.path, mode: src.mode, mtimeMs: src.mtimeMs }, b);
      }
      return track.record(b); // changed after the earlier attempt passed it over
    } finally {
      await src.fh.close();
    }
  }
}
