/**
 * A whole restore run, without printing: a set, or an increment with its
 * chain of bases, restored oldest first, one restoreSession per set that some
 * bundle needs, onto the device a task queue serves; each bundle's outcome
 * combined over its chain. `planRestore` finds every wrong use before anything
 * starts; the caller then provides the worker (workers/embedded.ts for `--to`).
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { BusinessError } from '../../common/businessError.js';
import { ErrorCode, type ErrorInfo } from '../../common/errors.js';
import { runOutcome } from '../../common/rules.js';
import type { BundleOutcome } from '../../common/session.js';
import { device, taskQueue } from '../connection.js';
import { bundleLinks, readSetChain } from '../sets/chain.js';
import { SET_CAPABILITIES, type SetInfo } from '../sets/layout.js';
import { BundleNameArg } from '../validate.js';
import { restoreSession, type RestoreProgressEvent } from './restoreSession.js';
import { SetupError, connect, sessionUiUrl } from './setup.js';
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
  // Each bundle's sets, root first; and the sets any bundle needs, each of which must be whole.
  const links = new Map(names.map((n) => [n, asUsage(() => bundleLinks(chain, n))]));
  const steps = [...new Set([...links.values()].flat())].sort((x, y) => x - y);
  for (const k of steps) {
    const dir = chain[k]!.dir;
    if (!statSync(path.join(dir, SET_CAPABILITIES), { throwIfNoEntry: false })?.isFile()) {
      throw new SetupError(`the backup set ${dir} (a base of ${from}) is not whole: it has no ${SET_CAPABILITIES}.`, 'usage');
    }
  }
  return { from, to, map, chain, links, steps };
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
      session: { taskQueue: queue, target: `restore from ${from}${plan.to ? ` to ${plan.to}` : ''}`, ...(plan.to ? { device: null } : {}) },
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
    outcome: runOutcome(bundles, { error, interrupted }),
  };
}
