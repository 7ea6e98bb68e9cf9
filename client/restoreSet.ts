/**
 * Restores bundles from a backup set (as `ohbackup backup` writes it) through
 * a SessionRestore: for each bundle, once it begins, ask a target for every
 * file of its index (and the index itself), copy the file into the writable
 * fd the service hands back, and publish the bundle when all are written.
 * Used by `ohbackup restore`, the demo and the tests.
 */
import { close, copyFile, createReadStream, createWriteStream, existsSync, open } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { readManageIndex } from '../engine/formats/manageIndex.js';
import { BusinessError } from '../common/businessError.js';
import { codeForSystemError, describeCode } from '../common/errors.js';
import type { BundleOutcome } from '../common/session.js';
import { SET_CAPABILITIES } from './backupSet.js';
import { SessionRestore } from './sessionRestore.js';
import type { SessionOptions } from './sessionBase.js';
import type { GeneralCallbacks } from './types.js';

const openFd = promisify(open);
const closeFd = promisify(close);
const copy = promisify(copyFile);

export interface RestoreProgress {
  type: 'begin' | 'file' | 'end';
  bundleName: string;
  files?: number;
  total?: number;
  outcome?: BundleOutcome;
}

export interface RestoreSetOptions {
  /** The backup set folder. */
  from: string;
  /** Bundles to restore (default: every bundle folder of the set with an index). */
  bundles: string[];
  /** source → target bundle (app_mapping_relation). */
  map?: Record<string, string>;
  session?: SessionOptions;
  onProgress?: (p: RestoreProgress) => void;
  /** Extra callbacks, called after the driver's own (tests record order through them). */
  observe?: Partial<GeneralCallbacks>;
}

export interface RestoreSetResult {
  sessionId: string;
  bundles: BundleOutcome[];
}

/** Copies a set file into a writable fd, in the kernel where it can (copy_file_range via /proc/self/fd). */
async function copyIntoFd(source: string, fd: number): Promise<void> {
  const viaProc = `/proc/self/fd/${fd}`;
  if (existsSync(viaProc)) return copy(source, viaProc);
  await pipeline(createReadStream(source), createWriteStream('', { fd, autoClose: false }));
}

export async function restoreFromSet(opts: RestoreSetOptions): Promise<RestoreSetResult> {
  const files = new Map<string, string[]>();
  for (const b of opts.bundles) {
    const index = await readManageIndex(path.join(opts.from, b, 'manage.json'));
    files.set(b, [...index.files.map((f) => f.uri), 'manage.json']);
  }
  const outcomes = new Map<string, BundleOutcome>(opts.bundles.map((b) => [b, { bundleName: b, state: 'pending', files: 0, bytes: 0 }]));
  const written = new Map<string, number>();
  let session!: SessionRestore;
  let failure: BusinessError | undefined;
  let finish!: () => void;
  const allEnded = new Promise<void>((resolve) => (finish = resolve));
  const pending = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  const fail = (bundleName: string, err: BusinessError<unknown>) => {
    const o = outcomes.get(bundleName)!;
    const running = o.state === 'running';
    o.state = 'failed';
    o.error ??= { code: err.code, message: err.message };
    // A bundle that can no longer get all its files would wait for its publish until its deadline: end it now.
    if (running) session.cancel(bundleName);
  };

  const callbacks: GeneralCallbacks = {
    onBundleBegin(err, bundleName) {
      opts.observe?.onBundleBegin?.(err, bundleName);
      if (err) return fail(bundleName, err);
      outcomes.get(bundleName)!.state = 'running';
      opts.onProgress?.({ type: 'begin', bundleName, total: files.get(bundleName)?.length });
      for (const uri of files.get(bundleName) ?? []) track(session.getFileHandle({ bundleName, uri }).catch((e: BusinessError) => fail(bundleName, e)));
    },
    onFileReady(err, file) {
      opts.observe?.onFileReady?.(err, file);
      if (err) return fail(file.bundleName, err);
      track(
        (async () => {
          try {
            await copyIntoFd(path.join(opts.from, file.bundleName, file.uri), file.fd);
          } finally {
            await closeFd(file.fd);
          }
          const n = (written.get(file.bundleName) ?? 0) + 1;
          written.set(file.bundleName, n);
          const o = outcomes.get(file.bundleName)!;
          o.files = n;
          opts.onProgress?.({ type: 'file', bundleName: file.bundleName, files: n, total: files.get(file.bundleName)?.length });
          if (n === files.get(file.bundleName)?.length) await session.publishFile({ bundleName: file.bundleName, uri: '' });
        })().catch((e: unknown) => fail(file.bundleName, asBusinessError(e))),
      );
    },
    onResultReport(bundleName, result) {
      opts.observe?.onResultReport?.(bundleName, result);
      try {
        const r = JSON.parse(result) as { bytes?: number };
        if (typeof r.bytes === 'number') outcomes.get(bundleName)!.bytes = r.bytes;
      } catch {
        // a hook's own result string
      }
    },
    onProcess: (b, p) => opts.observe?.onProcess?.(b, p),
    onBundleEnd(err, bundleName) {
      opts.observe?.onBundleEnd?.(err, bundleName);
      const o = outcomes.get(bundleName)!;
      if (err) fail(bundleName, err);
      else if (o.state !== 'failed') o.state = 'done';
      opts.onProgress?.({ type: 'end', bundleName, outcome: o });
    },
    onAllBundlesEnd(err) {
      opts.observe?.onAllBundlesEnd?.(err);
      if (err) failure = err;
      finish();
    },
    onBackupServiceDied: () => opts.observe?.onBackupServiceDied?.(),
  };

  session = new SessionRestore(callbacks, opts.session);
  const infos = opts.map && Object.keys(opts.map).length ? mappingInfos(opts.map, opts.bundles.length) : undefined;
  const capsFd = await openFd(path.join(opts.from, SET_CAPABILITIES), 'r');
  try {
    await session.appendBundles(capsFd, opts.bundles, infos);
  } finally {
    await closeFd(capsFd);
  }
  await allEnded;
  while (pending.size) await Promise.all([...pending]);
  await session.release();
  if (failure) throw failure;
  return { sessionId: session.sessionId, bundles: [...outcomes.values()] };
}

/** The tool's own I/O failing (say, ENOSPC writing a file into its target) gets the reference's code. */
function asBusinessError(err: unknown): BusinessError<unknown> {
  if (err instanceof BusinessError) return err;
  const code = codeForSystemError(err);
  return new BusinessError(code, `${describeCode(code)}: ${err instanceof Error ? err.message : String(err)}`);
}

/** The broadcast info carrying app_mapping_relation, first of `count` infos (the rest empty objects). */
function mappingInfos(map: Record<string, string>, count: number): string[] {
  const detail = Object.entries(map).map(([source, target]) => ({ source, target }));
  const broadcast = JSON.stringify({ infos: [{ type: 'broadcast', details: [{ type: 'app_mapping_relation', detail }] }] });
  return [broadcast, ...Array.from({ length: count - 1 }, () => '{}')];
}
