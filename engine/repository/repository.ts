/**
 * A restic repository holding ohbackup's backup sessions, one snapshot each
 * (storedLayout.ts for what a snapshot holds, snapshotTags.ts for how it is
 * tagged, chain.ts for increments). Every byte goes in and out through
 * restic; this class never writes into the repository itself, so restic's
 * locking and crash safety are the repository's: a store killed at any point
 * leaves it `check`-clean. Staging happens in private temp folders
 * (stagingArea.ts), removed afterwards.
 *
 * Pure Node: no Temporal. Secrets stay in the child's environment
 * (environment.ts).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { baseFromKeptTree, keptTreeSummary, materializeBaseManifests } from './baseManifests.js';
import { chainOf } from './chain.js';
import { checkBundle, type BundleProblem } from './checkBundles.js';
import { type RepositoryLocation } from './environment.js';
import { ChainBroken, RepositoryError, ResticFailed, SetMismatch, SnapshotNotFound, redactRepository } from './errors.js';
import { diffStates, stateFromIndex, type BundleDiff, type BundleState } from './bundleState.js';
import { planForget, policyArgs, type ForgetDecision, type KeepPolicy } from './forgetPlan.js';
import { materializeSet, readStoredSummary, type MaterializedSet } from './materialize.js';
import { parseStatus, parseSummary, type StoreProgress, type StoreSummary } from './backupProgress.js';
import { findRestic } from './resticBinary.js';
import { exitError, runRestic, spawnRestic, watchRestic, withStaleLocksRemoved, type ResticContext } from './resticProcess.js';
import { dumpLines, dumpText, listStored } from './snapshotReader.js';
import { OHBACKUP_TAG, parseSnapshot, snapshotTags, type SnapshotInfo } from './snapshotTags.js';
import { readSetSummary, SetStager, stageSet, type StageOptions, type StagedSet } from './stageSet.js';
import { keptTreeKey, withKeptTree, type KeptTree } from './stagingCache.js';
import { withStagingDir } from './stagingArea.js';
import { INDEX_FILE, SET_MANIFEST, SET_SUMMARY, type SetSummary } from './storedLayout.js';
import { ManageIndexSchema } from '../../common/manageIndex.js';
import { ManifestEntrySchema } from '../../common/manifest.js';

export interface RepositoryOptions extends RepositoryLocation {
  /** The restic binary (default: found or built, engine/repository/resticBinary.ts). */
  restic?: string;
  /** Whether restic may be built with `go install` when missing (default true). */
  build?: boolean;
  /** Where private staging folders go (default the OS temp folder). Same filesystem as the sets: big files are linked, not copied. */
  tempDir?: string;
  /** Wait this long for a conflicting lock (restic's --retry-lock, e.g. "1m"); default fail at once. */
  retryLock?: string;
  onChild?: ResticContext['onChild'];
  onNotice?: ResticContext['onNotice'];
  /** Progress reports a second while storing (restic's RESTIC_PROGRESS_FPS); default 4. */
  progressFps?: number;
}

export interface StoreMeta {
  /** The device the set comes from: the snapshot's hostname and `device=` tag. */
  device: string;
  /**
   * For an increment: its base snapshot (an ID, a prefix of one, or
   * `session:<id>`). Default: the snapshot of the session the set's own
   * `base` set came from.
   */
  base?: string;
}

export interface StoreOptions {
  signal?: AbortSignal;
  /**
   * Keep the device's staging tree in this folder between stores
   * (stagingCache.ts): what did not change is neither staged nor read by
   * restic again. Without it, each store stages into a private temp folder.
   */
  keepStaging?: string;
  /** The set is given up after the store: its big files may be moved into a kept tree rather than copied. */
  moveBigFiles?: boolean;
  /**
   * The device's snapshots as the caller has just listed them (the listing
   * that resolved the increment's base): the store does not list them again.
   * Only for a set whose session the repository cannot hold yet (a run's own).
   * A promise: the listing is still under way (it runs while the session does).
   */
  snapshots?: SnapshotInfo[] | Promise<SnapshotInfo[]>;
}

/** A base guessed from a kept tree (guessLatestBase), until a listing confirms it. */
export interface GuessedBase {
  id: string;
  sessionId: string;
  bundles: string[];
}

/** What storeSet makes of a set before staging it. */
interface StorePlan {
  device: string;
  /** The device's snapshots (the base resolved among them; the kept tree's parent must be one). */
  all: SnapshotInfo[];
  base?: SnapshotInfo;
  tags: string[];
  time: Date;
  notStored: string[];
}

/** The stager's options for a store: a kept tree's records and whether big files may move into it. */
function stagerOptions(opts: StoreOptions, kept: KeptTree | undefined): StageOptions {
  return { signal: opts.signal, ...(kept ? { previous: kept.previous, moveBigFiles: opts.moveBigFiles } : {}) };
}

export interface StoreResult {
  snapshot: SnapshotInfo;
  summary: StoreSummary;
  /** Bundles stored; and those of the session that were not (not done). */
  bundles: string[];
  notStored: string[];
  /** True when the session was in the repository already: nothing was stored again. */
  existed: boolean;
  /** Files a kept staging tree already held as the index says (not staged again). */
  kept?: number;
}

export interface CheckResult {
  ok: boolean;
  /** restic's own check. */
  restic: { ok: boolean; errors: number; brokenPacks: string[]; messages: string[] };
  /** What is damaged, by snapshot and bundle. */
  damaged: BundleProblem[];
  snapshotsChecked: number;
}

export interface ForgetResult {
  decisions: ForgetDecision[];
  forgotten: string[];
  pruned: boolean;
  dryRun: boolean;
}

export interface DiffResult {
  a: SnapshotInfo;
  b: SnapshotInfo;
  bundles: BundleDiff[];
}

/** restic's `--time` format, in local time (as restic reads it). */
function resticTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export class Repository {
  private constructor(
    readonly ctx: ResticContext,
    readonly options: RepositoryOptions,
  ) {}

  /** The repository string, without a URL's user:password: safe to print. */
  get name(): string {
    return redactRepository(this.options.repository);
  }

  private static async context(opts: RepositoryOptions): Promise<ResticContext> {
    const binary = opts.restic ?? (await findRestic({ build: opts.build })).path;
    return {
      binary,
      location: { repository: opts.repository, passwordFile: opts.passwordFile, env: opts.env },
      retryLock: opts.retryLock,
      onChild: opts.onChild,
      onNotice: opts.onNotice,
    };
  }

  /** Creates a new repository (restic init); fails when one is there already. */
  static async init(opts: RepositoryOptions): Promise<Repository> {
    const ctx = await Repository.context(opts);
    try {
      await runRestic(ctx, { args: ['init', '--json'], onJson: () => undefined });
    } catch (err) {
      if (err instanceof ResticFailed && /already exists|already initialized/i.test(err.message)) {
        throw new RepositoryError(`There is a repository at ${redactRepository(opts.repository)} already.`);
      }
      throw err;
    }
    return new Repository(ctx, opts);
  }

  /** Opens an existing repository: RepositoryNotFound when there is none, WrongPassword when the password does not open it. */
  static async open(opts: RepositoryOptions): Promise<Repository> {
    const ctx = await Repository.context(opts);
    await runRestic(ctx, { args: ['cat', 'config'] });
    return new Repository(ctx, opts);
  }

  // ---- storing ---------------------------------------------------------------

  /**
   * Stores a backup set folder as one snapshot: every done bundle's entries as
   * files (each checked against its index first), the indexes, manifests,
   * capabilities and summary beside them. An increment's base is recorded by
   * snapshot (tags and `baseSnapshot`/`baseSession` in the stored summary).
   * Storing a session that is in the repository already stores nothing.
   */
  async storeSet(setDir: string, meta: StoreMeta, onProgress?: (p: StoreProgress) => void, opts: StoreOptions = {}): Promise<StoreResult> {
    const plan = await this.#planStore(setDir, meta, opts);
    if ('existed' in plan) return plan.existed;
    return this.#withStaging(meta.device, plan.base ? 'increment' : 'full', opts, (stage, kept) =>
      this.#store(setDir, plan, stage, kept, new SetStager(stage, stagerOptions(opts, kept)), onProgress, opts),
    );
  }

  /**
   * storeSet of a set still being written: `write` runs the session that
   * writes it into a folder of the caller's and tells `bundleDone` of each
   * bundle once all its files are in the set, which is then staged while the
   * session goes on; `write` returns the set's folder once its summary is
   * written (undefined: nothing to store). The kind of tree (`meta.base`:
   * an increment) is known before the set is. `write` runs a new session:
   * the device's snapshots are listed while it runs (or are `opts.snapshots`).
   */
  async storeWhileWriting(
    meta: StoreMeta,
    write: (bundleDone: (setDir: string, bundle: string) => void) => Promise<string | undefined>,
    onProgress?: (p: StoreProgress) => void,
    opts: StoreOptions = {},
  ): Promise<StoreResult | undefined> {
    // Listed while the session runs: its session is new, so nothing the store needs can appear in the listing meanwhile.
    const listing = opts.snapshots !== undefined ? Promise.resolve(opts.snapshots) : this.snapshots({ device: meta.device, signal: opts.signal });
    listing.catch(() => undefined); // awaited after the session; not an unhandled rejection meanwhile
    return this.#withStaging(meta.device, meta.base ? 'increment' : 'full', opts, async (stage, kept) => {
      const stager = new SetStager(stage, stagerOptions(opts, kept));
      let setDir: string | undefined;
      try {
        setDir = await write((dir, bundle) => stager.bundleDone(dir, bundle));
      } finally {
        // Nothing stages into the folder once this returns (it may be removed, or its lock given up).
        await stager.settle();
      }
      if (setDir === undefined) return undefined;
      const plan = await this.#planStore(setDir, meta, { ...opts, snapshots: await listing });
      if ('existed' in plan) return plan.existed;
      if (!plan.base !== !meta.base) throw new RepositoryError(`${setDir}: an increment must name its base snapshot when stored while it is written`);
      return this.#store(setDir, plan, stage, kept, stager, onProgress, opts);
    });
  }

  /** What a store of the set makes (tags, base, time), or the snapshot that holds its session already. */
  async #planStore(setDir: string, meta: StoreMeta, opts: StoreOptions): Promise<StorePlan | { existed: StoreResult }> {
    const summary = await readSetSummary(setDir);
    const all = (await opts.snapshots) ?? (await this.snapshots({ device: meta.device, signal: opts.signal }));
    const existing = all.find((s) => s.sessionId === summary.sessionId);
    const stored = summary.bundles.filter((b) => b.state === 'done').map((b) => b.bundleName);
    const notStored = summary.bundles.filter((b) => b.state !== 'done').map((b) => b.bundleName);
    if (existing) {
      const zero = {
        snapshotId: existing.id,
        bytesProcessed: existing.size ?? 0,
        filesProcessed: 0,
        dataAdded: 0,
        dataAddedPacked: 0,
        filesNew: 0,
        filesChanged: 0,
        filesUnmodified: 0,
        seconds: 0,
      };
      return { existed: { snapshot: existing, summary: zero, bundles: existing.bundles, notStored, existed: true } };
    }
    const base = await this.baseFor(setDir, summary, meta, all);
    const tags = snapshotTags({
      device: meta.device,
      sessionId: summary.sessionId,
      kind: summary.kind,
      bundles: stored,
      partial: notStored.length > 0,
      ...(base ? { base: { id: base.id, sessionId: base.sessionId } } : {}),
    });
    const time = Number.isFinite(Date.parse(summary.createdAt)) ? new Date(summary.createdAt) : new Date();
    return { device: meta.device, all, base, tags, time, notStored };
  }

  /** Runs `fn` with the staging folder: the device's kept tree (`keepStaging`) when it is free, else a private one. */
  #withStaging<T>(device: string, kind: 'full' | 'increment', opts: StoreOptions, fn: (stage: string, kept?: KeptTree) => Promise<T>): Promise<T> {
    const privately = () => withStagingDir('stage', this.options.tempDir, (stage) => fn(stage));
    if (!opts.keepStaging) return privately();
    return withKeptTree(opts.keepStaging, keptTreeKey(device, this.name, kind), (kept) => (kept ? fn(kept.tree, kept) : privately()));
  }

  /** Stages the set (the rest of it, with a stager that began early) and lets restic store the staging folder. */
  async #store(
    setDir: string,
    plan: StorePlan,
    stage: string,
    kept: KeptTree | undefined,
    stager: SetStager,
    onProgress: ((p: StoreProgress) => void) | undefined,
    opts: StoreOptions,
  ): Promise<StoreResult> {
    const { base, tags, time, all, notStored } = plan;
    const summaryPatch = (s: SetSummary) => {
      const { base: _b, baseRelative: _r, baseSnapshot: _s, baseSession: _ss, ...rest } = s;
      return { ...rest, ...(base ? { baseSnapshot: base.id, baseSession: base.sessionId } : {}) } as SetSummary;
    };
    let staged: StagedSet;
    try {
      staged = await stager.finish(setDir, summaryPatch);
    } catch (err) {
      if (!kept || err instanceof SetMismatch || opts.signal?.aborted) throw err;
      // Something in the kept tree was in the way (a hand in it): stage it afresh once.
      await fsp.rm(stage, { recursive: true, force: true });
      await fsp.mkdir(stage, { mode: 0o700 });
      staged = await stageSet(setDir, stage, { ...stagerOptions(opts, kept), previous: new Map(), summaryPatch });
    }
    let result: StoreSummary | undefined;
    // The kept tree's last snapshot as parent: restic then skips the files left as they were (same inode, ctime, mtime, size).
    const parent = kept?.parent && all.some((s) => s.id === kept.parent) ? ['--parent', kept.parent] : [];
    const args = ['backup', '--json', '--host', plan.device, '--time', resticTime(time), ...tags.flatMap((t) => ['--tag', t]), ...parent, '.'];
    const r = await runRestic(this.ctx, {
      args,
      cwd: stage,
      env: { RESTIC_PROGRESS_FPS: String(this.options.progressFps ?? 4) },
      okCodes: [0, 3],
      signal: opts.signal,
      onJson: (m) => {
        const p = parseStatus(m);
        if (p) onProgress?.(p);
        result ??= parseSummary(m);
      },
    });
    if (!result) throw new ResticFailed(`restic backup made no snapshot of ${setDir} (it printed no summary)`);
    if (r.code === 3) {
      // Some staged file could not be read: that snapshot is not the set. Forget it, never keep half a session.
      await runRestic(this.ctx, { args: ['forget', result.snapshotId] }).catch(() => undefined);
      throw new ResticFailed(`restic could not read every staged file of ${setDir}; the snapshot was not kept: ${r.stderr.slice(-3).join(' ')}`, 3);
    }
    await kept?.save(staged.records, result.snapshotId);
    // What `snapshots()` would list for it, without opening the repository once more.
    const snapshot = parseSnapshot({
      id: result.snapshotId,
      time: new Date(Math.floor(time.getTime() / 1000) * 1000).toISOString(),
      hostname: plan.device,
      tags,
      summary: { total_bytes_processed: result.bytesProcessed, data_added: result.dataAdded },
    })!;
    return { snapshot, summary: result, bundles: staged.bundles, notStored, existed: false, kept: staged.kept };
  }

  /** The base snapshot of an increment being stored, or undefined for a full one. */
  private async baseFor(setDir: string, summary: SetSummary, meta: StoreMeta, all: SnapshotInfo[]): Promise<SnapshotInfo | undefined> {
    if (meta.base) return this.resolve(meta.base, { device: meta.device, among: all });
    if (summary.baseSnapshot || summary.baseSession) {
      const bySession = all.find((s) => s.sessionId === summary.baseSession) ?? all.find((s) => s.id === summary.baseSnapshot);
      if (!bySession)
        throw new ChainBroken(`${setDir} is an increment of session ${summary.baseSession}, which is not in the repository: store its base first`);
      return bySession;
    }
    if (!summary.base) return undefined;
    const candidates = [summary.baseRelative ? path.resolve(setDir, summary.baseRelative) : undefined, path.resolve(setDir, summary.base)].filter(
      (d): d is string => !!d,
    );
    let baseSession: string | undefined;
    for (const dir of candidates) {
      baseSession = await readSetSummary(dir).then(
        (s) => s.sessionId,
        () => undefined,
      );
      if (baseSession) break;
    }
    if (!baseSession) throw new ChainBroken(`${setDir} is an increment of ${summary.base}, which cannot be read: name its base snapshot explicitly`);
    const found = all.find((s) => s.sessionId === baseSession);
    if (!found)
      throw new ChainBroken(`${setDir} is an increment of ${summary.base} (session ${baseSession}), which is not in the repository: store its base first`);
    return found;
  }

  // ---- listing -----------------------------------------------------------------

  /** ohbackup's snapshots, oldest first; filtered by device and by a bundle they store. */
  async snapshots(filter: { device?: string; bundle?: string; signal?: AbortSignal } = {}): Promise<SnapshotInfo[]> {
    const r = await runRestic(this.ctx, {
      args: [
        'snapshots',
        '--json',
        '--tag',
        filter.bundle ? `${OHBACKUP_TAG},bundle=${filter.bundle}` : OHBACKUP_TAG,
        ...(filter.device ? ['--host', filter.device] : []),
      ],
      signal: filter.signal,
    });
    const list = JSON.parse(r.stdout || '[]') as unknown[];
    return list
      .map(parseSnapshot)
      .filter((s): s is SnapshotInfo => !!s && (!filter.device || s.device === filter.device))
      .sort((a, b) => a.time.localeCompare(b.time));
  }

  /**
   * One snapshot by ID (or a unique prefix), `session:<id>`, or `latest`
   * (the newest, of the device when one is named).
   */
  async resolve(ref: string, opts: { device?: string; among?: SnapshotInfo[] } = {}): Promise<SnapshotInfo> {
    const all = opts.among ?? (await this.snapshots({ device: opts.device }));
    const pool = opts.device ? all.filter((s) => s.device === opts.device) : all;
    let found: SnapshotInfo[];
    if (ref === 'latest') found = pool.slice(-1);
    else if (ref.startsWith('session:')) found = pool.filter((s) => s.sessionId === ref.slice('session:'.length));
    else found = /^[0-9a-f]{4,64}$/.test(ref) ? pool.filter((s) => s.id.startsWith(ref)) : [];
    const where = `${this.name}${opts.device ? ` (device ${opts.device})` : ''}`;
    if (found.length === 0) throw new SnapshotNotFound(`No ohbackup snapshot ${ref} in ${where}.`);
    if (found.length > 1 && ref !== 'latest') throw new SnapshotNotFound(`${ref} names ${found.length} snapshots in ${where}: give more of the ID.`);
    return found[0]!;
  }

  /** The chain of snapshots a restore of `ref` needs, root first. */
  async chain(ref: string, opts: { device?: string } = {}): Promise<SnapshotInfo[]> {
    const all = await this.snapshots();
    const s = await this.resolve(ref, { device: opts.device, among: all });
    return chainOf(s, all);
  }

  // ---- restoring ---------------------------------------------------------------

  /** Rebuilds the set folder of one snapshot (materialize.ts). */
  async materializeSet(
    ref: string,
    outDir: string,
    opts: { bundles?: string[]; device?: string; keepGoing?: boolean; signal?: AbortSignal } = {},
  ): Promise<MaterializedSet> {
    const s = await this.resolve(ref, { device: opts.device });
    return materializeSet(this.ctx, s.id, outDir, s.bundles, opts);
  }

  /**
   * Rebuilds the whole chain of `ref` under `outRoot`, one set folder per
   * snapshot (`<n>-<short id>`, root first), each increment's
   * backup_set.json naming its base folder (relative and absolute), as the
   * plain set restore reads chains. Returns the folders, root first.
   */
  async materializeChain(
    ref: string,
    outRoot: string,
    opts: { bundles?: string[]; device?: string; keepGoing?: boolean; signal?: AbortSignal } = {},
  ): Promise<MaterializedSet[]> {
    const chain = await this.chain(ref, { device: opts.device });
    const last = chain[chain.length - 1]!;
    const wanted = opts.bundles ?? last.bundles;
    for (const b of wanted) if (!last.bundles.includes(b)) throw new SetMismatch(`snapshot ${last.shortId} does not store bundle ${b}`, b);
    await fsp.mkdir(outRoot, { recursive: true, mode: 0o700 });
    const sets: MaterializedSet[] = [];
    for (const [k, s] of chain.entries()) {
      const dir = path.join(outRoot, `${k}-${s.shortId}`);
      const set = await materializeSet(this.ctx, s.id, dir, s.bundles, {
        bundles: wanted.filter((b) => s.bundles.includes(b)),
        keepGoing: opts.keepGoing,
        signal: opts.signal,
      });
      const prev = sets[sets.length - 1];
      if (prev) {
        set.summary = { ...set.summary, base: prev.dir, baseRelative: path.relative(dir, prev.dir) };
        await fsp.writeFile(path.join(dir, SET_SUMMARY), JSON.stringify(set.summary, null, 2), { mode: 0o600 });
      }
      sets.push(set);
    }
    return sets;
  }

  /**
   * The base of a new increment, as a set folder without data: the
   * snapshot's backup_set.json and each bundle's manifest (baseManifests.ts).
   * Store the increment with `{ base: <this snapshot's ID> }`. With
   * `keepStaging` (storeSet's), the files are read from the device's kept
   * tree when it was the one stored as that snapshot and still holds it.
   */
  async materializeBase(
    ref: string,
    outDir: string,
    opts: { device?: string; signal?: AbortSignal; keepStaging?: string; among?: SnapshotInfo[] } = {},
  ): Promise<SnapshotInfo & { fromKeptTree: boolean }> {
    const s = await this.resolve(ref, { device: opts.device, ...(opts.among ? { among: opts.among } : {}) });
    if (opts.keepStaging)
      for (const kind of ['increment', 'full'] as const) {
        const read = await withKeptTree(
          opts.keepStaging,
          keptTreeKey(s.device, this.name, kind),
          async (kept) => !!kept && kept.parent === s.id && !!(await baseFromKeptTree(kept.tree, kept.previous, s.sessionId, outDir, s.bundles)),
          { onlyIfThere: true },
        );
        if (read) return { ...s, fromKeptTree: true };
      }
    await materializeBaseManifests(this.ctx, s.id, outDir, s.bundles, opts.signal);
    return { ...s, fromKeptTree: false };
  }

  /**
   * The base `latest` most likely is, from the device's kept trees alone (no
   * restic call, so no key derivation): the newer of the snapshots last
   * stored from them, its summary and manifests read as materializeBase reads
   * them (only files that still are what was stored). A guess: list the
   * repository meanwhile and store the increment only if `confirmsGuess`
   * says `latest` is this very snapshot.
   */
  async guessLatestBase(outDir: string, opts: { device: string; keepStaging: string }): Promise<GuessedBase | undefined> {
    const candidates: Array<GuessedBase & { kind: 'full' | 'increment'; createdAt: number }> = [];
    for (const kind of ['increment', 'full'] as const) {
      const c = await withKeptTree(
        opts.keepStaging,
        keptTreeKey(opts.device, this.name, kind),
        async (kept) => {
          const summary = kept?.parent ? await keptTreeSummary(kept.tree, kept.previous) : undefined;
          if (!kept?.parent || !summary) return undefined;
          const bundles = summary.bundles.filter((b) => b.state === 'done').map((b) => b.bundleName);
          return { kind, id: kept.parent, sessionId: summary.sessionId, bundles, createdAt: Date.parse(summary.createdAt) };
        },
        { onlyIfThere: true },
      );
      if (c && Number.isFinite(c.createdAt)) candidates.push(c);
    }
    const newest = candidates.sort((a, b) => b.createdAt - a.createdAt)[0];
    // Two of the same time: which one restic lists last is not known here.
    if (!newest || candidates.some((c) => c !== newest && c.createdAt === newest.createdAt)) return undefined;
    const read = await withKeptTree(
      opts.keepStaging,
      keptTreeKey(opts.device, this.name, newest.kind),
      async (kept) => !!kept && kept.parent === newest.id && !!(await baseFromKeptTree(kept.tree, kept.previous, newest.sessionId, outDir, newest.bundles)),
      { onlyIfThere: true },
    );
    return read ? { id: newest.id, sessionId: newest.sessionId, bundles: newest.bundles } : undefined;
  }

  /** `latest` of the device among `listed`, when it is the guessed base (same snapshot, session and bundles); else undefined. */
  confirmsGuess(guess: GuessedBase, listed: SnapshotInfo[], device: string): SnapshotInfo | undefined {
    const s = listed.filter((x) => x.device === device).at(-1); // resolve('latest')'s pick, without its throw on none
    const bundles = new Set(s?.bundles);
    const same = bundles.size === guess.bundles.length && guess.bundles.every((b) => bundles.has(b));
    return s && s.id === guess.id && s.sessionId === guess.sessionId && same ? s : undefined;
  }

  /** The summary (backup_set.json) a snapshot stores. */
  async storedSummary(ref: string): Promise<SetSummary> {
    const s = await this.resolve(ref);
    return readStoredSummary(this.ctx, s.id);
  }

  // ---- keeping in shape --------------------------------------------------------

  /**
   * restic's check of the repository, then every bundle of every ohbackup
   * snapshot against its stored index (sizes, and with `readData` every
   * file's SHA-256, read back through restic). `readDataSubset` ("10%",
   * "1/5", "100M") is passed to restic's check; the bundles are then checked
   * by size only.
   */
  async check(opts: { readData?: boolean; readDataSubset?: string; signal?: AbortSignal } = {}): Promise<CheckResult> {
    if (opts.readDataSubset !== undefined && !/^(\d+(\.\d+)?%|\d+\/\d+|\d+[KMGT]?)$/.test(opts.readDataSubset)) {
      throw new TypeError(`read-data-subset "${opts.readDataSubset}" is not n%, n/t or a size`);
    }
    const args = ['check', '--json', ...(opts.readData ? ['--read-data'] : []), ...(opts.readDataSubset ? [`--read-data-subset=${opts.readDataSubset}`] : [])];
    let summary: { num_errors?: number; broken_packs?: string[] } | undefined;
    // Exit 1 is "damaged", not a failure to check: read its summary, keep its messages.
    const r = await withStaleLocksRemoved(this.ctx, async () => {
      const child = spawnRestic(this.ctx, { args, signal: opts.signal });
      const watched = watchRestic(this.ctx, child, opts.signal);
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
      const done = await watched.done;
      for (const line of out.split('\n')) {
        try {
          const m = JSON.parse(line) as { message_type?: string; num_errors?: number; broken_packs?: string[] };
          if (m.message_type === 'summary') summary = m;
        } catch {
          // text
        }
      }
      const err = exitError(this.ctx, 'check', done, [0, 1]);
      if (err) throw err;
      return done;
    });
    const messages = r.stderr
      .map((l) => {
        try {
          const m = JSON.parse(l) as { message_type?: string; message?: string };
          return m.message_type === 'error' ? (m.message ?? '') : '';
        } catch {
          return /error|damaged|fail/i.test(l) ? l : '';
        }
      })
      .filter(Boolean);
    const resticOk = r.code === 0 && (summary?.num_errors ?? 0) === 0;
    const damaged: BundleProblem[] = [];
    const snapshots = await this.snapshots({ signal: opts.signal });
    for (const s of snapshots) {
      try {
        await readStoredSummary(this.ctx, s.id, opts.signal);
      } catch (e) {
        damaged.push({ snapshot: s.id, bundleName: '', problem: `its ${SET_SUMMARY} cannot be read: ${(e as Error).message}` });
      }
      for (const b of s.bundles) {
        opts.signal?.throwIfAborted();
        for (const problem of await checkBundle(this.ctx, s.id, b, opts.readData === true, opts.signal))
          damaged.push({ snapshot: s.id, bundleName: b, problem });
      }
    }
    return {
      ok: resticOk && damaged.length === 0,
      restic: { ok: resticOk, errors: summary?.num_errors ?? (r.code === 0 ? 0 : 1), brokenPacks: summary?.broken_packs ?? [], messages },
      damaged,
      snapshotsChecked: snapshots.length,
    };
  }

  /**
   * Applies a keep policy per device (restic's, grouped by host), never
   * cutting a chain (forgetPlan.ts); then prunes when asked. A dry run only
   * says what would go and why.
   */
  async forget(policy: KeepPolicy, opts: { device?: string; prune?: boolean; dryRun?: boolean; signal?: AbortSignal } = {}): Promise<ForgetResult> {
    const args = [
      'forget',
      '--json',
      '--dry-run',
      '--tag',
      OHBACKUP_TAG,
      '--group-by',
      'host',
      ...(opts.device ? ['--host', opts.device] : []),
      ...policyArgs(policy),
    ];
    const r = await runRestic(this.ctx, { args, signal: opts.signal });
    const groups = JSON.parse(
      r.stdout
        .trim()
        .split('\n')
        .find((l) => l.startsWith('[')) ?? '[]',
    ) as Array<{
      keep?: Array<{ id: string }>;
      remove?: Array<{ id: string }>;
      reasons?: Array<{ snapshot?: { id?: string }; matches?: string[] }>;
    }>;
    const keep = new Map<string, string[]>();
    const remove: string[] = [];
    for (const g of groups) {
      for (const k of g.keep ?? []) keep.set(k.id, []);
      for (const why of g.reasons ?? []) if (why.snapshot?.id && keep.has(why.snapshot.id)) keep.set(why.snapshot.id, why.matches ?? []);
      for (const x of g.remove ?? []) remove.push(x.id);
    }
    const all = await this.snapshots({ signal: opts.signal });
    const decisions = planForget(all, keep, remove);
    const forgotten = decisions.filter((d) => !d.keep).map((d) => d.snapshot.id);
    if (opts.dryRun) return { decisions, forgotten, pruned: false, dryRun: true };
    if (forgotten.length) await runRestic(this.ctx, { args: ['forget', ...forgotten], signal: opts.signal });
    if (opts.prune) await runRestic(this.ctx, { args: ['prune'], signal: opts.signal });
    return { decisions, forgotten, pruned: opts.prune === true, dryRun: false };
  }

  /** Removes data no snapshot needs any more (restic prune). */
  async prune(opts: { signal?: AbortSignal } = {}): Promise<void> {
    await runRestic(this.ctx, { args: ['prune'], signal: opts.signal });
  }

  // ---- comparing ---------------------------------------------------------------

  /** What changed from snapshot `a` to snapshot `b` of one device, per bundle. */
  async diff(aRef: string, bRef: string, opts: { signal?: AbortSignal } = {}): Promise<DiffResult> {
    const all = await this.snapshots({ signal: opts.signal });
    const a = await this.resolve(aRef, { among: all });
    const b = await this.resolve(bRef, { among: all });
    if (a.device !== b.device)
      throw new RepositoryError(`${a.shortId} is of device ${a.device}, ${b.shortId} of device ${b.device}: diff compares two snapshots of one device`);
    const names = [...new Set([...a.bundles, ...b.bundles])].sort();
    const bundles: BundleDiff[] = [];
    for (const name of names) {
      const sa = a.bundles.includes(name) ? await this.bundleState(a, name, all, opts.signal) : undefined;
      const sb = b.bundles.includes(name) ? await this.bundleState(b, name, all, opts.signal) : undefined;
      bundles.push(diffStates(name, sa, sb));
    }
    return { a, b, bundles };
  }

  /** What a restore of `bundle` from snapshot `s` holds (bundleState.ts). */
  private async bundleState(s: SnapshotInfo, bundle: string, all: SnapshotInfo[], signal?: AbortSignal): Promise<BundleState> {
    const names = new Set((await listStored(this.ctx, s.id, `/${bundle}`, { signal })).map((n) => n.name));
    if (names.has(SET_MANIFEST)) {
      const state: BundleState = new Map();
      let header = true;
      await dumpLines(
        this.ctx,
        s.id,
        `/${bundle}/${SET_MANIFEST}`,
        (line) => {
          if (header || !line.trim()) {
            header = false;
            return;
          }
          const e = ManifestEntrySchema.parse(JSON.parse(line));
          state.set(e.path, e);
        },
        signal,
      );
      return state;
    }
    const index = ManageIndexSchema.parse(JSON.parse(await dumpText(this.ctx, s.id, `/${bundle}/${INDEX_FILE}`, signal)));
    if (!index.incremental) return stateFromIndex(index);
    const chain = chainOf(s, all);
    const base = chain[chain.length - 2];
    if (!base || !base.bundles.includes(bundle))
      throw new ChainBroken(`snapshot ${s.shortId} holds an increment of ${bundle}, but its base does not hold the bundle`);
    return stateFromIndex(index, await this.bundleState(base, bundle, all, signal));
  }

  // ---- moving ------------------------------------------------------------------

  /**
   * Copies ohbackup snapshots from `source` into this repository (restic
   * copy; all of them, or the ones named). Copies get new snapshot IDs and
   * keep their tags, so chains resolve by session here too.
   */
  async copyFrom(source: Repository, opts: { snapshots?: string[]; signal?: AbortSignal } = {}): Promise<void> {
    await runRestic(this.ctx, {
      args: ['copy', '--tag', OHBACKUP_TAG, ...(opts.snapshots ?? [])],
      from: source.ctx.location,
      signal: opts.signal,
    });
  }

  /** Bytes the repository holds (restic stats --mode raw-data: after deduplication, before compression). */
  async rawDataSize(opts: { signal?: AbortSignal } = {}): Promise<number> {
    const r = await runRestic(this.ctx, { args: ['stats', '--json', '--mode', 'raw-data'], signal: opts.signal });
    return (JSON.parse(r.stdout) as { total_size?: number }).total_size ?? 0;
  }
}
