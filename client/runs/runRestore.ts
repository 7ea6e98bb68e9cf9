/**
 * A whole restore run, without printing: a set, or an increment with its
 * chain of bases, restored oldest first, one restoreSession per set that some
 * bundle needs, onto the device a task queue serves; each bundle's outcome
 * combined over its chain. `planRestore` finds every wrong use before anything
 * starts; the caller then provides the worker (workers/embedded.ts for `--to`).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { BusinessError } from '../../common/businessError.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { runOutcome } from '../../common/rules.js';
import type { BundleOutcome } from '../../common/session.js';
import { bundlePaths } from '../../common/device.js';
import { INDEX_URI, type ManageIndex } from '../../common/manageIndex.js';
import { readSettings } from '../../config/env.js';
import { runningDevServer } from '../../engine/stateLock.js';
import { device, taskQueue } from '../connection.js';
import { bundleLinks, readSetChain } from '../sets/chain.js';
import { SET_CAPABILITIES, type SetInfo } from '../sets/layout.js';
import { BundleNameArg } from '../validate.js';
import { restoreSession, type RestoreProgressEvent } from './restoreSession.js';
import { SetupError, connect, readDeviceCapabilities, sessionUiUrl } from './setup.js';
import type { RunSummary } from './tally.js';

export type { RestoreProgressEvent } from './restoreSession.js';

export interface RestoreRequest {
  /** The backup set folder (`ohbackup backup --out`). */
  from: string;
  /** Bundles to restore; none = every bundle the set holds (state done in backup_set.json). */
  bundles?: string[];
  /** Restore onto the device at this data root (its worker is the caller's: workers/embedded.ts). */
  to?: string;
  /** source bundle → target bundle on the device (app_mapping_relation). */
  map?: Record<string, string>;
  /** Replace the data of bundles whose data/ is not empty (else planRestore refuses them). */
  force?: boolean;
  /** Only the plan is wanted: data that would be replaced is listed, not refused. */
  dryRun?: boolean;
  /** Keep each bundle's replaced data/ tree as `data.before-<session>` (SessionOptions.keepPrevious). */
  keepPrevious?: boolean;
}

/** What a restore does, found before anything starts. */
export interface RestorePlan {
  from: string;
  to?: string;
  map: Record<string, string>;
  chain: SetInfo[];
  /** Each bundle's positions in `chain`, root first. */
  links: Map<string, number[]>;
  /** The positions of the sets any bundle needs, oldest first: one session each. */
  steps: number[];
  /** Bundles (by their name in the set) whose target's data/ is not empty: restoring replaces it. */
  replaces: string[];
  keepPrevious: boolean;
  /** Whether `replaces` was found here (the data root is on this machine); else askDeviceData finds it through the device. */
  dataRootKnown: boolean;
  /** Set when no bundle was named and a set restored is not complete (backup_set.json `complete: false`): why. */
  incomplete?: string;
}

/** One bundle of a plan, as `restore --dry-run` shows it. */
export interface PlannedBundle {
  bundleName: string;
  /** The bundle its data goes into (`map`), else itself. */
  target: string;
  /** The sets it is restored from, oldest first. */
  sets: string[];
  /** Files and folders its indexes list, summed over its sets. */
  entries: number;
  bytes: number;
  replacesData: boolean;
}

export interface RunRestoreOptions {
  /** Default the tool library's connection. */
  client?: Client;
  /** The task queue of the worker that serves the target device; default the tool library's (`configure`, OHBACKUP_TASK_QUEUE). */
  taskQueue?: string;
  onProgress?: (event: RestoreProgressEvent) => void;
  /** Aborting releases the session: running bundles are stopped, and the run returns as interrupted. */
  signal?: AbortSignal;
  /** The target's worker stopping by itself fails the session it serves. */
  workerStopped?: Promise<BusinessError>;
  /** Each session's tool timeout (SessionOptions.toolTimeoutMs). */
  toolTimeoutMs?: number;
}

/** One restore session of the run: one set of the chain. */
export interface RestoredSet {
  /** The set folder (absolute). */
  from: string;
  sessionId: string;
  uiUrl: string;
  /** The outcome of each bundle restored from this set. */
  bundles: BundleOutcome[];
  /** Set when this session itself failed. */
  error?: ErrorInfo;
}

export interface RestoreRunResult extends RunSummary {
  /** The last session run (the only one, unless `from` is an increment). */
  sessionId: string;
  namespace: string;
  uiUrl: string;
  from: string;
  /** The data root restored onto, when `to` was given. */
  to?: string;
  taskQueue: string;
  /** The device restored onto (`--device`), when one was named. */
  device?: string;
  map: Record<string, string>;
  /**
   * One per restored bundle, named by its name in the set: its final outcome
   * over the chain (done only if every set of its chain was restored; files
   * and bytes summed over them).
   */
  bundles: BundleOutcome[];
  /** The sets restored, oldest first, each by its own session. */
  sets: RestoredSet[];
  /** The set restored from is not complete (restored as asked, outcome at best partial): why. */
  incomplete?: string;
}

/** The sets' own problems are wrong usage here: the caller named them. */
function asUsage<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw new SetupError((err as Error).message, 'usage');
  }
}

function checkName(name: string, what: string): void {
  if (!BundleNameArg.safeParse(name).success) throw new SetupError(`${what} "${name}" is not a bundle name (like com.example.notes).`, 'usage');
}

/** Everything that is wrong usage, found before anything starts (a SetupError). */
export function planRestore(req: RestoreRequest): RestorePlan {
  const from = path.resolve(req.from);
  const chain = asUsage(() => readSetChain(from));
  const held = chain[chain.length - 1]!.done;
  if (!statSync(path.join(from, SET_CAPABILITIES), { throwIfNoEntry: false })?.isFile()) {
    throw new SetupError(`--from ${from} is not a backup set (it has no ${SET_CAPABILITIES}).`, 'usage');
  }
  const asked = [...new Set(req.bundles ?? [])];
  for (const name of asked) {
    checkName(name, 'bundle');
    if (!held.includes(name)) throw new SetupError(`the backup set ${from} does not hold bundle ${name} (it holds: ${held.join(', ') || 'none'}).`, 'usage');
  }
  const names = asked.length ? asked : held;
  const map = { ...(req.map ?? {}) };
  for (const [source, target] of Object.entries(map)) {
    checkName(source, '--map source');
    checkName(target, '--map target');
    if (!names.includes(source))
      throw new SetupError(`--map ${source}=${target}: ${source} is not among the bundles restored (${names.join(', ') || 'none'}).`, 'usage');
  }
  let to: string | undefined;
  if (req.to !== undefined) {
    to = path.resolve(req.to);
    const st = statSync(to, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) throw new SetupError(`--to ${to} is not a folder.`, 'usage');
  }
  if (!names.length) throw new SetupError(`The backup set ${from} holds no completely backed-up bundle: nothing to restore.`, 'failed');
  const root = to ?? localDataRoot();
  const replaces = root === undefined ? [] : names.filter((n) => !isEmptyFolder(bundlePaths(root, map[n] ?? n).data));
  refuseReplacing(replaces, map, req);
  // Each bundle's sets, root first; and the sets any bundle needs, each of which must be whole.
  const links = new Map(names.map((n) => [n, asUsage(() => bundleLinks(chain, n))]));
  const steps = [...new Set([...links.values()].flat())].sort((x, y) => x - y);
  for (const k of steps) {
    const dir = chain[k]!.dir;
    if (!statSync(path.join(dir, SET_CAPABILITIES), { throwIfNoEntry: false })?.isFile()) {
      throw new SetupError(`the backup set ${dir} (a base of ${from}) is not whole: it has no ${SET_CAPABILITIES}.`, 'usage');
    }
  }
  const unfinished = asked.length ? undefined : steps.map((k) => chain[k]!).find((set) => !set.complete);
  const incomplete = unfinished && `the backup set ${unfinished.dir} is not complete (${unfinished.why}); name the bundles to restore to accept it.`;
  return {
    from,
    to,
    map,
    chain,
    links,
    steps,
    replaces,
    keepPrevious: !!req.keepPrevious,
    dataRootKnown: root !== undefined,
    ...(incomplete ? { incomplete } : {}),
  };
}

/** Data there now is replaced only when asked to (`force`), or merely listed (`dryRun`). */
function refuseReplacing(replaces: string[], map: Record<string, string>, req: Pick<RestoreRequest, 'force' | 'dryRun'>): void {
  if (!replaces.length || req.force || req.dryRun) return;
  const list = replaces.map((n) => (map[n] ? `${n} (into ${map[n]})` : n)).join(', ');
  throw new SetupError(
    `restoring would replace data that is there now, in ${list}: nothing was written. --force replaces it; --dry-run shows the plan.`,
    'usage',
  );
}

/**
 * For a device whose data root is not on this machine: its capability file
 * says which bundles hold data (spaceOccupied > 0, the bytes its profile backs
 * up). Fills `plan.replaces`, then refuses as planRestore does. Before any session.
 */
export async function askDeviceData(plan: RestorePlan, req: Pick<RestoreRequest, 'force' | 'dryRun'>, client: Client, queue: string): Promise<void> {
  if (plan.dataRootKnown) return;
  const caps = await readDeviceCapabilities(client, queue);
  const holding = new Set(caps.bundleInfos.filter((b) => b.spaceOccupied > 0).map((b) => b.name));
  plan.replaces = [...plan.links.keys()].filter((n) => holding.has(plan.map[n] ?? n));
  refuseReplacing(plan.replaces, plan.map, req);
}

/** The device's data root when it is on this machine and known: OHBACKUP_DATA_ROOT, or the one a local `ohbackup dev` serves (not for another device). */
function localDataRoot(): string | undefined {
  if (device()) return undefined;
  const settings = readSettings();
  return settings.dataRoot ?? runningDevServer(settings.stateDir)?.dataRoot;
}

function isEmptyFolder(dir: string): boolean {
  try {
    return readdirSync(dir).length === 0;
  } catch {
    return true; // missing: nothing to replace
  }
}

/** What each bundle of the plan restores: its sets, the entries and bytes of their indexes, and whether it replaces data. */
export function describePlan(plan: RestorePlan): PlannedBundle[] {
  return [...plan.links].map(([bundleName, ks]) => {
    let entries = 0;
    let bytes = 0;
    for (const k of ks) {
      const index = JSON.parse(readFileSync(path.join(plan.chain[k]!.dir, bundleName, INDEX_URI), 'utf8')) as ManageIndex;
      entries += index.totals.files + index.totals.dirs;
      bytes += index.totals.bytes;
    }
    return {
      bundleName,
      target: plan.map[bundleName] ?? bundleName,
      sets: ks.map((k) => plan.chain[k]!.dir),
      entries,
      bytes,
      replacesData: plan.replaces.includes(bundleName),
    };
  });
}

/**
 * One session per set of the chain that some bundle needs, oldest first;
 * a bundle leaves the chain at its first link that is not done.
 */
export async function runRestore(plan: RestorePlan, opts: RunRestoreOptions): Promise<RestoreRunResult> {
  if (opts.signal?.aborted) throw new SetupError('Interrupted before the restore session started: nothing was restored.', 'interrupted');
  const client = opts.client ?? (await connect());
  const queue = opts.taskQueue ?? taskQueue();
  const namespace = client.options.namespace;
  const onDevice = !plan.to && device() ? { device: device() } : {};
  const finals = new Map<string, BundleOutcome>([...plan.links.keys()].map((n) => [n, { bundleName: n, state: 'pending', files: 0, bytes: 0 }]));
  const ran = new Set<string>();
  const sets: RestoredSet[] = [];
  const isChain = plan.steps.length > 1;
  let error: ErrorInfo | undefined;
  let interrupted = false;
  for (const [i, k] of plan.steps.entries()) {
    const names = [...plan.links].filter(([n, ks]) => ks.includes(k) && finals.get(n)!.state === 'pending').map(([n]) => n);
    if (!names.length) continue;
    if (opts.signal?.aborted) {
      interrupted = true;
      break;
    }
    const from = plan.chain[k]!.dir;
    const run = await restoreSession({
      client,
      from,
      bundles: names,
      map: Object.fromEntries(Object.entries(plan.map).filter(([source]) => names.includes(source))),
      // With --to, the run's own worker serves the data root: no device's queue is involved.
      session: {
        taskQueue: queue,
        target: `restore from ${from}${plan.to ? ` to ${plan.to}` : ''}`,
        ...(plan.to ? { device: null } : {}),
        ...(plan.keepPrevious ? { keepPrevious: true } : {}),
        ...(opts.toolTimeoutMs !== undefined ? { toolTimeoutMs: opts.toolTimeoutMs } : {}),
      },
      startDetails: { ...onDevice, to: plan.to, step: i + 1, steps: plan.steps.length },
      onProgress: opts.onProgress,
      signal: opts.signal,
      workerStopped: opts.workerStopped,
    });
    sets.push({
      from,
      sessionId: run.sessionId,
      uiUrl: sessionUiUrl(namespace, run.sessionId),
      bundles: run.bundles,
      ...(run.error ? { error: run.error } : {}),
    });
    error ??= run.error;
    for (const o of run.bundles) {
      const f = finals.get(o.bundleName);
      if (!f) continue;
      ran.add(o.bundleName);
      f.files += o.files;
      f.bytes += o.bytes;
      if (o.state !== 'done') {
        f.state = o.state;
        if (o.error) f.error = isChain ? { ...o.error, message: `${o.error.message} (restoring ${from})` } : o.error;
      } else if (k === plan.links.get(o.bundleName)!.at(-1)) f.state = 'done';
    }
    if (run.interrupted) {
      interrupted = true;
      break;
    }
  }
  for (const f of finals.values()) {
    if (f.state !== 'pending') continue;
    if (!ran.has(f.bundleName)) f.state = 'notStarted';
    else {
      // Restored up to some increment only: the data is an older state than the one asked for.
      f.state = 'failed';
      f.error ??= {
        code: ErrorCode.TASK_FAILED,
        message: interrupted ? 'Interrupted before its later increments were restored' : 'Its later increments were not restored',
      };
    }
  }
  const last = sets[sets.length - 1];
  if (!last) throw new SetupError('Interrupted before the restore session started: nothing was restored.', 'interrupted');
  const bundles = [...finals.values()];
  const outcome = runOutcome(bundles, { error, interrupted });
  if (plan.incomplete) opts.onProgress?.({ type: 'notice', message: `Warning: ${plan.incomplete}` });
  return {
    sessionId: last.sessionId,
    namespace,
    uiUrl: last.uiUrl,
    from: plan.from,
    to: plan.to,
    taskQueue: queue,
    ...onDevice,
    map: plan.map,
    bundles,
    sets,
    ...(error ? { error } : {}),
    interrupted,
    ...(plan.incomplete ? { incomplete: plan.incomplete } : {}),
    // What was restored may be whole, but the set was not: the run is at best partial.
    outcome: plan.incomplete && outcome === 'done' ? 'partial' : outcome,
  };
}
