/**
 * Bad input that reaches a real session (one worker for the whole file, a
 * real Temporal dev server, real files and fds), as properties with a fixed
 * seed: every refused call gets the reference's code and leaves nothing
 * behind — no workflow started (checked through the Temporal client), no file
 * created (the device's data root and both state folders are compared before
 * and after), and the session still takes the call it is owed.
 */
import { bundleClaimWorkflowId } from '../../common/deviceKey.js';
import { closeSync, constants as fsc, openSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeManifest } from '../../engine/formats/manifest.js';
import { backup } from '../../client/index.js';
import type { GeneralCallbacks } from '../../client/types.js';
import { outcomesQuery } from '../../common/messages.js';
import { writeBundle } from '../helpers/device.js';
import {
  SEED,
  anyBundleList,
  anyInfos,
  anyName,
  bytes,
  callbacksArb,
  capabilityContent,
  isObject,
  manifestCase,
  manifestContent,
  okBundleList,
  okBundleName,
  okCallbacks,
  okInfos,
  okOptions,
  okUri,
  optionsArb,
  rejection,
  thrown,
  validName,
} from '../helpers/hostileInput.js';
import { listTree } from '../helpers/listTree.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

/** Calls that reach the service are slower: fewer runs. */
const RUNS = { seed: SEED, numRuns: 20 };

let root: string;
let dataRoot: string;
let workerState: string;
let toolState: string;
let scratch: string;
let taskQueue: string;
let client: Client;
let stopWorker: () => void;
let workerDone: Promise<unknown>;
/** Every workflow this file meant to start on its task queue, by ID or ID prefix; anything else is a leak. */
const expectedIds = new Set<string>();
// The device's bundle-claim workflow (13500013) runs once an accepted appendBundles claims bundles.
const expectedPrefixes = new Set<string>([bundleClaimWorkflowId('')]);

const NOTES = 'com.example.notes';
const DOCS = 'com.example.docs';
const LOCKED = 'com.example.locked';

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-badinput-'));
  dataRoot = path.join(root, 'device');
  workerState = path.join(root, 'worker-state');
  toolState = path.join(root, 'tool-state');
  scratch = path.join(root, 'scratch');
  await Promise.all([mkdir(workerState), mkdir(toolState), mkdir(scratch)]);
  // The tool keeps base manifests in its state folder: here, where the test can watch it.
  process.env.OHBACKUP_STATE_DIR = toolState;
  await writeBundle(dataRoot, { name: NOTES, files: { 'a.txt': 'a', 'dir/b.txt': 'bb' } });
  await writeBundle(dataRoot, { name: DOCS, files: { 'doc.txt': 'd' } });
  await writeBundle(dataRoot, { name: LOCKED, config: { allowToBackupRestore: false } });
  taskQueue = uniqueTaskQueue('badinput');
  configureTool(taskQueue);
  client = await testClient();
  // One worker serves the whole file.
  await new Promise<void>((started) => {
    workerDone = withWorker({ taskQueue, dataRoot, stateDir: workerState }, () => {
      started();
      return new Promise<void>((resolve) => (stopWorker = resolve));
    });
  });
});

afterAll(async () => {
  stopWorker?.();
  await workerDone;
  await client?.connection.close();
  await rm(root, { recursive: true, force: true });
});

const callbacks = (rec?: Recorder): GeneralCallbacks =>
  rec?.callbacks ?? {
    onFileReady: (_err, file) => file.fd >= 0 && closeSync(file.fd),
    onBundleBegin: () => undefined,
    onBundleEnd: () => undefined,
    onAllBundlesEnd: () => undefined,
    onBackupServiceDied: () => undefined,
  };

/** The files and folders of the device and of both state folders. */
async function trees(): Promise<string[]> {
  return [...(await listTree(dataRoot)), ...(await listTree(workerState)), ...(await listTree(toolState))];
}

async function expectNoWorkflow(workflowId: string): Promise<void> {
  const err = await client.workflow
    .getHandle(workflowId)
    .describe()
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(err, `${workflowId} exists`).toBeInstanceOf(WorkflowNotFoundError);
}

let fileNo = 0;
function fdOf(content: string | Uint8Array): number {
  const file = path.join(scratch, `f${fileNo++}`);
  writeFileSync(file, content);
  return openSync(file, 'r');
}

/** Resolves once the session's workflow runs (the constructor starts it without waiting); its answer: no such bundle. */
async function started(session: { cancelAsync(b: string): Promise<number>; sessionId: string }): Promise<void> {
  expect(await session.cancelAsync('com.example.none')).toBe(13500012);
  expect(await outcomes(session.sessionId)).toEqual([]);
}

/** A session's own record of its bundles. */
function outcomes(sessionId: string) {
  return client.workflow.getHandle(sessionId).query(outcomesQuery);
}

describe('refused calls leave nothing behind', () => {
  it('constructors: 401 for bad callbacks or options, and no session workflow is started', async () => {
    const classes = [backup.SessionBackup, backup.SessionRestore, backup.IncrementalBackupSession] as const;
    const before = await trees();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(0, 1, 2), callbacksArb, optionsArb, async (which, cb, options) => {
        // A known session ID (where the options are an object) to look for afterwards.
        const sessionId = `refused-${taskQueue}-${n++}`;
        const opts = isObject(options) ? { ...options, sessionId, attachTo: undefined } : options;
        fc.pre(!(okCallbacks(cb) && okOptions(opts)));
        const Session = classes[which]!;
        const err = thrown(() => new Session(cb as GeneralCallbacks, opts as never));
        expect(err?.code).toBe(401);
        expect(err!.message).toMatch(/^Parameter error: (callbacks|options)/);
        if (isObject(opts)) await expectNoWorkflow(sessionId);
      }),
      { ...RUNS, numRuns: 40 },
    );
    expect(await trees()).toEqual(before);
  });

  it('SessionBackup.appendBundles: refused lists and infos append nothing (no bundle child, nothing on disk); the one call allowed still works', async () => {
    const rec = new Recorder();
    const session = new backup.SessionBackup(rec.callbacks);
    expectedIds.add(session.sessionId);
    expectedPrefixes.add(`${session.sessionId}/`);
    // The session exists before the refused calls begin.
    await started(session);
    const before = await trees();
    const named = new Set<string>();
    await fc.assert(
      fc.asyncProperty(anyBundleList, anyInfos, async (list, infos) => {
        const valid =
          okBundleList(list) && okInfos(infos, (list as unknown[]).length) && bytes([...(list as unknown[]), ...((infos as unknown[]) ?? [])]) <= 1024 * 1024;
        fc.pre(!valid);
        if (Array.isArray(list)) for (const b of list.slice(0, 20)) if (okBundleName(b)) named.add(b as string);
        const err = thrown(() => session.appendBundles(list as string[], infos as string[]));
        expect(err?.code).toBe(401);
        expect(err!.message).toMatch(/^Parameter error: (bundlesToBackup|infos)/);
      }),
      { ...RUNS, numRuns: 40 },
    );
    expect(await trees()).toEqual(before);
    for (const b of named) await expectNoWorkflow(`${session.sessionId}/${b}`);
    expect(await outcomes(session.sessionId)).toEqual([]);

    // The one appendBundles a backup session allows was not used up; bundles the device cannot back up get 13500001.
    await session.appendBundles([NOTES, LOCKED, 'com.example.absent']);
    await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
    expect(
      rec.calls
        .filter((c) => c.cb === 'onBundleEnd')
        .map((c) => [c.bundleName, c.code])
        .sort(),
    ).toEqual([
      ['com.example.absent', 13500001],
      [LOCKED, 13500001],
      [NOTES, undefined],
    ]);
    await session.release();
  });

  it('SessionRestore.appendBundles: malformed capability files (garbage, truncated, wrong schema, devices) → 13900020; nothing restored or created; the call is still allowed', async () => {
    const caps = await backup.getLocalCapabilities();
    expectedPrefixes.add('ohbackup-capabilities-');
    const rec = new Recorder(undefined, { observer: true });
    const session = new backup.SessionRestore(rec.callbacks);
    expectedIds.add(session.sessionId);
    expectedPrefixes.add(`${session.sessionId}/`);
    await started(session);
    const before = await trees();
    await fc.assert(
      fc.asyncProperty(capabilityContent, async ({ text, valid }) => {
        fc.pre(!valid);
        const fd = fdOf(text);
        try {
          const err = await rejection(session.appendBundles(fd, [NOTES]));
          expect(err.code).toBe(13900020);
          expect(err.message).toMatch(/^Invalid argument: the capability file \(fd \d+\) (is not JSON|is not valid: )/);
        } finally {
          closeSync(fd);
        }
      }),
      RUNS,
    );
    // Not files at all. Regression: /dev/zero was read into memory until the tool died.
    const fifo = path.join(scratch, 'fifo');
    execFileSync('mkfifo', [fifo]);
    for (const [what, fd] of [
      ['/dev/zero', openSync('/dev/zero', 'r')],
      ['/dev/null', openSync('/dev/null', 'r')],
      ['a fifo', openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK)],
      ['a folder', openSync(scratch, 'r')],
    ] as const) {
      try {
        const err = await rejection(session.appendBundles(fd, [NOTES]));
        expect(err.code, what).toBe(13900020);
        expect(err.message).toMatch(/^Invalid argument: the capability file \(fd \d+\) (is not a regular file|cannot be read)/);
      } finally {
        closeSync(fd);
      }
    }
    await rm(fifo);
    expect(await trees()).toEqual(before);
    await expectNoWorkflow(`${session.sessionId}/${NOTES}`);
    expect(await outcomes(session.sessionId)).toEqual([]);

    // The real capability file is still taken; the bundle begins and waits for its files.
    await session.appendBundles(caps.fd, [NOTES]);
    closeSync(caps.fd);
    await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin' && x.bundleName === NOTES));
    expect(rec.of(NOTES)[0]).toMatchObject({ cb: 'onBundleBegin', code: undefined });

    // getFileHandle / publishFile with uris that are paths, too long, or other characters: 13900020, no target made.
    const during = await trees();
    const uri = fc.oneof(
      fc.constantFrom(
        '.',
        '..',
        '../x',
        '../../etc/passwd',
        'a/b',
        '/etc/passwd',
        'a\0b',
        'ü.tar',
        'a'.repeat(256),
        'a'.repeat(100_000),
        'a b',
        'a\\b',
        'part.0.tar/',
      ),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }),
    );
    await fc.assert(
      fc.asyncProperty(uri, fc.boolean(), async (u, publish) => {
        fc.pre(!okUri(u, publish));
        const meta = { bundleName: NOTES, uri: u };
        const err = await rejection(publish ? session.publishFile(meta) : session.getFileHandle(meta));
        expect(err.code).toBe(13900020);
        expect(err.message).toMatch(/^Invalid argument: uri "/);
        expect(err.message.length).toBeLessThan(300);
      }),
      RUNS,
    );
    // A bundle the session does not hold, and a FileMeta of the wrong shape.
    expect((await rejection(session.getFileHandle({ bundleName: DOCS, uri: 'manage.json' }))).code).toBe(13900020);
    for (const meta of [null, {}, { bundleName: NOTES }, { bundleName: NOTES, uri: 5 }, { bundleName: '../x', uri: 'a' }, 'manage.json']) {
      expect(thrown(() => session.getFileHandle(meta as never))?.code).toBe(401);
    }
    expect(await trees()).toEqual(during);
    expect(rec.calls.filter((c) => c.cb === 'onFileReady')).toEqual([]);
    await session.release();
  });

  it('IncrementalBackupSession.appendBundles: malformed base manifests → 13900020, the whole call refused, no copy kept, no bundle started; valid increments run', async () => {
    const rec = new Recorder();
    const session = new backup.IncrementalBackupSession(rec.callbacks);
    expectedIds.add(session.sessionId);
    expectedPrefixes.add(`${session.sessionId}/`);
    await started(session);
    const validManifest = path.join(scratch, 'base.jsonl');
    await writeManifest(validManifest, { bundleName: DOCS, time: 1_700_000_000 }, [
      { path: 'doc.txt', kind: 'file', mode: 0o644, size: 1, mtimeMs: 1, sha256: 'ab'.repeat(32) },
    ]);
    const before = await trees();
    await fc.assert(
      fc.asyncProperty(manifestCase, fc.boolean(), async (k, withValidOne) => {
        fc.pre(k.how !== 'valid');
        const fd = fdOf(await manifestContent(k, NOTES, scratch));
        const good = openSync(validManifest, 'r');
        try {
          // A valid increment in the same call is refused with it: nothing of the call is kept.
          const list = [
            ...(withValidOne ? [{ bundleName: DOCS, lastIncrementalTime: 1_700_000_000, manifestFd: good }] : []),
            { bundleName: NOTES, lastIncrementalTime: 1_700_000_000, manifestFd: fd },
          ];
          const err = await rejection(session.appendBundles(list));
          expect(err.code).toBe(13900020);
          expect(err.message.startsWith(`Invalid argument: the manifest of ${NOTES} (manifestFd ${fd}) is not valid: `), err.message).toBe(true);
        } finally {
          closeSync(fd);
          closeSync(good);
        }
      }),
      RUNS,
    );
    expect(await trees()).toEqual(before);
    await expectNoWorkflow(`${session.sessionId}/${NOTES}`);
    await expectNoWorkflow(`${session.sessionId}/${DOCS}`);
    expect(await outcomes(session.sessionId)).toEqual([]);

    // Regression, minimal: a valid base manifest before an invalid one; the valid one's copy used to stay behind.
    {
      const good = openSync(validManifest, 'r');
      const bad = fdOf('not a manifest');
      const err = await rejection(
        session.appendBundles([
          { bundleName: DOCS, lastIncrementalTime: 1_700_000_000, manifestFd: good },
          { bundleName: NOTES, lastIncrementalTime: 1_700_000_000, manifestFd: bad },
        ]),
      );
      closeSync(good);
      closeSync(bad);
      expect(err.code).toBe(13900020);
      expect(await listTree(toolState)).toEqual([]);
    }

    // A valid increment and a full backup in one call: both run.
    const good = openSync(validManifest, 'r');
    await session.appendBundles([
      { bundleName: DOCS, lastIncrementalTime: 1_700_000_000, manifestFd: good, parameters: '{"mode":"quick"}' },
      { bundleName: NOTES, lastIncrementalTime: 0, manifestFd: -1 },
    ]);
    closeSync(good);
    await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
    expect(
      rec.calls
        .filter((c) => c.cb === 'onBundleEnd')
        .map((c) => [c.bundleName, c.code])
        .sort(),
    ).toEqual([
      [DOCS, undefined],
      [NOTES, undefined],
    ]);
    expect(await listTree(path.join(toolState, 'transfer', session.sessionId))).toHaveLength(1);
    await session.release();
    // Released: the copy of the base manifest is gone with it.
    expect(await listTree(path.join(toolState, 'transfer'))).toEqual([]);
  });

  it('every call on a released session → 13900001 (cancel: 13500012), and starts nothing', async () => {
    const sessions = [new backup.SessionBackup(callbacks()), new backup.IncrementalBackupSession(callbacks()), new backup.SessionRestore(callbacks())] as const;
    for (const s of sessions) {
      expectedIds.add(s.sessionId);
      await s.release();
    }
    const before = await trees();
    const fd = openSync('/dev/null', 'r');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(0, 1, 2), fc.nat(7), validName, async (which, call, name) => {
        const s = sessions[which]!;
        if (call === 0) {
          expect(s.cancel(name)).toBe(13500012);
          return;
        }
        const p =
          call === 1
            ? s.release()
            : call === 2
              ? s.getLocalCapabilities()
              : call === 3
                ? s.cleanBundleTempDir(name)
                : call === 4
                  ? s.getCompatibilityInfo(name, '{}')
                  : s instanceof backup.SessionRestore
                    ? call === 5
                      ? s.appendBundles(fd, [name])
                      : s.getFileHandle({ bundleName: name, uri: 'manage.json' })
                    : s instanceof backup.SessionBackup
                      ? call === 5
                        ? s.appendBundles([name])
                        : s.getBackupDataSize(false, [{ bundleName: name, lastIncrementalTime: 0 }])
                      : call === 5
                        ? s.appendBundles([{ bundleName: name, lastIncrementalTime: 0, manifestFd: -1 }])
                        : s.getBackupDataSize(true, []);
        const err = await rejection(p);
        expect(err.code).toBe(13900001);
        expect(err.message).toMatch(/^Operation not permitted: the session (was released|has ended)/);
      }),
      RUNS,
    );
    closeSync(fd);
    expect(await trees()).toEqual(before);
  });

  it('module functions: refused arguments start no device request; unknown bundles get the reference answers', async () => {
    await fc.assert(
      fc.asyncProperty(anyName, fc.constantFrom(0, 1), async (name, which) => {
        fc.pre(!okBundleName(name));
        const err = thrown(() =>
          which === 0 ? backup.getBackupInfo(name as string) : backup.getLocalCapabilities([{ bundleName: name as string, lastIncrementalTime: 0 }]),
        );
        expect(err?.code).toBe(401);
      }),
      { ...RUNS, numRuns: 40 },
    );
    // Valid names the device does not have: '' (no hook), and the capability file lists nothing for them.
    expect(await backup.getBackupInfo('com.example.absent')).toBe('');
    expectedPrefixes.add('ohbackup-hook-');
    const { fd } = await backup.getLocalCapabilities([{ bundleName: 'com.example.absent', lastIncrementalTime: 0 }]);
    closeSync(fd);
    const s = new backup.SessionBackup(callbacks());
    expectedIds.add(s.sessionId);
    expect(await s.cleanBundleTempDir('com.example.absent')).toBe(false);
    expectedPrefixes.add('ohbackup-clean-');
    expect(await s.getCompatibilityInfo('com.example.absent', '')).toBe('');
    await s.release();
  });

  it('nothing else ran on the task queue: every workflow there was started by a call that was accepted', async () => {
    const seen: string[] = [];
    // Visibility is eventually consistent: wait until it shows every session this file started, then look at all.
    for (;;) {
      seen.length = 0;
      for await (const wf of client.workflow.list({ query: `TaskQueue = "${taskQueue}"` })) seen.push(wf.workflowId);
      if ([...expectedIds].every((id) => seen.includes(id))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const unexpected = seen.filter((id) => !expectedIds.has(id) && ![...expectedPrefixes].some((p) => id.startsWith(p)));
    expect(unexpected).toEqual([]);
  });
});
