/**
 * The fds a session hands to the tool are capped (SessionOptions.maxOpenFds):
 * a tool that never closes its fds gets 13900011 for the next file instead of
 * exhausting the process, and that bundle's delivery ends there (its end and
 * the session's outcome say so, and count only what the tool got); a tool that
 * closes them, however late, gets every file exactly once under the same
 * small cap (delivery waits for it: backpressure).
 */
import { closeSync, fstatSync, readSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import type { File, GeneralCallbacks } from '../../client/types.js';
import type { BusinessError } from '../../common/businessError.js';
import type { SessionResult } from '../../common/session.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const BUNDLE = 'com.example.many';
/** Files over 2 MiB are handed over one each; with a tar slice (small.txt) and the index, eight files. */
const BIG = 6;

let root: string;
let dataRoot: string;
let taskQueue: string;
let client: Client;
let stopWorker: () => void;
let workerDone: Promise<unknown>;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-fdcap-'));
  dataRoot = path.join(root, 'device');
  await mkdir(path.join(root, 'state'));
  process.env.OHBACKUP_STATE_DIR = path.join(root, 'tool-state');
  await writeBundle(dataRoot, { name: BUNDLE, files: { ...bigFiles(BIG), 'small.txt': 'small' } });
  taskQueue = uniqueTaskQueue('fdcap');
  configureTool(taskQueue);
  client = await testClient();
  await new Promise<void>((started) => {
    workerDone = withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, () => {
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

/** Callbacks that record everything and hand each file to `onFile` (which owns its fds). */
function tool(rec: Recorder, onFile: (file: File) => void): GeneralCallbacks {
  return {
    ...rec.callbacks,
    onFileReady: (err: BusinessError | undefined, file: File) => {
      rec.callbacks.onFileReady(err, file);
      if (!err) onFile(file);
    },
  };
}

/** The bytes behind `fd`, read through it. */
function readThrough(fd: number): Buffer {
  const chunks: Buffer[] = [];
  for (;;) {
    const buf = Buffer.alloc(1 << 20);
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n === 0) return Buffer.concat(chunks);
    chunks.push(buf.subarray(0, n));
  }
}

/** The uris the bundle's index says were handed over, itself last. */
function handedOver(index: Buffer): string[] {
  return [...(JSON.parse(index.toString('utf8')) as { files: Array<{ uri: string }> }).files.map((f) => f.uri), 'manage.json'];
}

describe('fd cap per session', () => {
  it('a tool that never closes its fds gets 13900011 for the next file instead of a crash; the bundle ends with 13900011 and its outcome counts only what the tool got', async () => {
    const rec = new Recorder(undefined, { observer: true }); // records only: the fds are onFile's
    const held: number[] = [];
    const session = new backup.SessionBackup(
      tool(rec, (file) => held.push(file.fd)),
      { maxOpenFds: 3, fdWaitMs: 1_500 },
    );
    try {
      await session.appendBundles([BUNDLE]);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      const files = rec.of(BUNDLE).filter((c) => c.cb === 'onFileReady');
      // Three fds (the cap), all open and distinct; then one refusal; then nothing more of the bundle.
      expect(files.slice(0, 3).map((f) => f.code)).toEqual([undefined, undefined, undefined]);
      expect(new Set(held).size).toBe(3);
      for (const fd of held) expect(fstatSync(fd).isFile()).toBe(true);
      expect(files.slice(3)).toHaveLength(1);
      expect(files[3]).toMatchObject({ code: 13900011 });
      expect(rec.calls.find((c) => c.cb === 'onFileReady' && c.code === 13900011)?.uri).toBe(files[3]!.uri);
      const end = rec.of(BUNDLE).find((c) => c.cb === 'onBundleEnd')!;
      expect(end.code).toBe(13900011);
      expect(end.message).toMatch(/^Out of memory: too many open files: .*cap 3.*1500 ms/);
      const result = JSON.parse(rec.of(BUNDLE).find((c) => c.cb === 'onResultReport')!.payload!);
      expect(result.resultInfo).toMatchObject({ errorCode: 13900011, type: 'ErrorInfo' });
      // Order still holds: begin < files < result < end, each once.
      expect(
        rec
          .of(BUNDLE)
          .map((c) => c.cb)
          .filter((cb) => cb !== 'onProcess'),
      ).toEqual(['onBundleBegin', 'onFileReady', 'onFileReady', 'onFileReady', 'onFileReady', 'onResultReport', 'onBundleEnd']);

      await session.release();
      // The session's own record agrees: failed with 13900011, three files handed over.
      const outcome: SessionResult = await client.workflow.getHandle(session.sessionId).result();
      expect(outcome.bundles).toEqual([
        expect.objectContaining({ bundleName: BUNDLE, state: 'failed', files: 3, error: expect.objectContaining({ code: 13900011 }) }),
      ]);
    } finally {
      for (const fd of held) closeSync(fd);
    }
  });

  it('a tool that closes its fds late gets every file once under the same small cap: delivery waits for it', async () => {
    const cap = 2;
    const rec = new Recorder(undefined, { observer: true }); // records only: the fds are onFile's
    let open: number[] = [];
    let maxOpen = 0;
    const contents = new Map<string, Buffer>();
    const session = new backup.SessionBackup(
      tool(rec, (file) => {
        open.push(file.fd);
        maxOpen = Math.max(maxOpen, open.length);
        contents.set(file.uri, readThrough(file.fd));
        // It lets its fds pile up to the cap, then closes them a while later: the next file must wait.
        if (open.length === cap) {
          const closing = open;
          open = [];
          setTimeout(() => closing.forEach((fd) => closeSync(fd)), 50);
        }
      }),
      { maxOpenFds: cap, fdWaitMs: 60_000 },
    );
    await session.appendBundles([BUNDLE]);
    await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
    await session.release();
    for (const fd of open) closeSync(fd);

    const files = rec.of(BUNDLE).filter((c) => c.cb === 'onFileReady');
    const expected = handedOver(contents.get('manage.json')!);
    expect(expected).toHaveLength(BIG + 2);
    // Every file the index lists, in its order, each once, none refused.
    expect(files.map((f) => [f.uri, f.code])).toEqual(expected.map((uri) => [uri, undefined]));
    expect(maxOpen).toBe(cap); // the cap was reached, never passed
    for (const [uri, bytes] of contents) if (uri.startsWith('file.')) expect(bytes.length).toBe(2 * 1024 * 1024 + 1);
    expect(rec.of(BUNDLE).find((c) => c.cb === 'onBundleEnd')?.code).toBeUndefined();
    const outcome: SessionResult = await client.workflow.getHandle(session.sessionId).result();
    expect(outcome.bundles).toEqual([expect.objectContaining({ bundleName: BUNDLE, state: 'done', files: expected.length })]);
  });

  it('incremental: each file comes with its manifest fd, two at once; a cap of 2 delivers them all, one pair at a time', async () => {
    const rec = new Recorder(undefined, { observer: true }); // records only: the fds are onFile's
    let open = 0;
    let maxOpen = 0;
    const manifestFds: Array<number | undefined> = [];
    const session = new backup.IncrementalBackupSession(
      tool(rec, (file) => {
        open += 2;
        maxOpen = Math.max(maxOpen, open);
        manifestFds.push(file.manifestFd);
        setTimeout(() => {
          closeSync(file.fd);
          closeSync(file.manifestFd!);
          open -= 2;
        }, 20);
      }),
      { maxOpenFds: 2, fdWaitMs: 60_000 },
    );
    await session.appendBundles([{ bundleName: BUNDLE, lastIncrementalTime: 0, manifestFd: -1 }]);
    await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
    await session.release();
    const files = rec.of(BUNDLE).filter((c) => c.cb === 'onFileReady');
    expect(files.map((f) => f.code)).toEqual(Array(BIG + 2).fill(undefined));
    expect(new Set(files.map((f) => f.uri)).size).toBe(BIG + 2);
    expect(maxOpen).toBe(2);
    expect(manifestFds.every((fd) => fd !== undefined && fd >= 0)).toBe(true);
    expect(rec.of(BUNDLE).find((c) => c.cb === 'onBundleEnd')?.code).toBeUndefined();
  });
});
