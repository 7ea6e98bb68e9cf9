/**
 * Bad input to every public call of the tool library, as properties
 * (fast-check, fixed seed): each call's arguments are drawn from valid and
 * hostile values alike, and an independent statement of the rule (an oracle
 * written here from api.md, not from the schemas) says which must be refused.
 * Refused → the reference's code (401 at once for arguments of the wrong type
 * or shape; 13900020 for a bad uri, capability file or manifest) with a
 * message naming what is wrong. No Temporal service is reached: the tool is
 * pointed at a closed port, so what passes the checks fails later with
 * 13600001 — which also shows nothing was refused that should have passed.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBaseManifest } from '../../client/baseManifest.js';
import { readCapabilityFile } from '../../client/capabilities.js';
import { backup } from '../../client/index.js';
import type { GeneralCallbacks } from '../../client/types.js';
import { BusinessError } from '../../common/businessError.js';
import {
  SEED,
  anyBundleList,
  anyInfos,
  anyName,
  anyNumber,
  anything,
  bytes,
  callbacksArb,
  capabilityContent,
  expect401Unless,
  isObject,
  jsonObjectString,
  manifestCase,
  manifestContent,
  okBundleList,
  okBundleName,
  okCallbacks,
  okDataList,
  okInfos,
  okJson,
  okOptions,
  okSafeInt,
  okSendRate,
  okSessionId,
  okTime,
  okTimeout,
  okUri,
  optionsArb,
  rejection,
  thrown,
  validName,
} from '../helpers/hostileInput.js';

/** Pure checks: cheap, so many runs. */
const RUNS = { seed: SEED, numRuns: 150 };
/** Checks that write and read real files. */
const FILE_RUNS = { seed: SEED, numRuns: 60 };

const callbacks = (): GeneralCallbacks => ({
  onFileReady: () => undefined,
  onBundleBegin: () => undefined,
  onBundleEnd: () => undefined,
  onAllBundlesEnd: () => undefined,
  onBackupServiceDied: () => undefined,
});

let root: string;
let stateDir: string;
let backupSession: backup.SessionBackup;
let restoreSession: backup.SessionRestore;
let incrementalSession: backup.IncrementalBackupSession;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-props-'));
  stateDir = path.join(root, 'state');
  mkdirSync(stateDir);
  process.env.OHBACKUP_STATE_DIR = stateDir;
  // Nothing listens on port 1: every call that passes its checks fails with 13600001.
  backup.configure({ address: '127.0.0.1:1', taskQueue: 'no-service' });
  backupSession = new backup.SessionBackup(callbacks());
  restoreSession = new backup.SessionRestore(callbacks());
  incrementalSession = new backup.IncrementalBackupSession(callbacks());
  // The first connection attempt runs out (regression: this was 13900042, "unknown").
  const err = await rejection(backupSession.getLocalCapabilities());
  expect(err.code).toBe(13600001);
  expect(err.message).toMatch(/^IPC error: cannot reach the Temporal service at 127\.0\.0\.1:1/);
}, 60_000);

afterAll(async () => {
  // Nothing any refused (or accepted) call did may have written into the tool's state folder.
  expect(readdirSync(stateDir)).toEqual([]);
  await rm(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------- module functions

describe('module functions', () => {
  it('updateTimer: 401 naming the argument unless a bundle name and a whole number of ms in [0, 14 400 000]; else false (no session runs it)', () => {
    fc.assert(
      fc.property(anyName, anyNumber, (name, timeout) => {
        const valid = okBundleName(name) && okTimeout(timeout);
        expect401Unless(valid, () => backup.updateTimer(name as string, timeout as number), okBundleName(name) ? 'timeout' : 'bundleName');
        if (valid) expect(backup.updateTimer(name as string, timeout as number)).toBe(false);
      }),
      RUNS,
    );
  });

  it('updateSendRate: 401 unless a bundle name and a whole number ≥ 0 (above 800 is clamped, not refused)', () => {
    fc.assert(
      fc.property(anyName, anyNumber, (name, rate) => {
        const valid = okBundleName(name) && okSendRate(rate);
        expect401Unless(valid, () => backup.updateSendRate(name as string, rate as number), okBundleName(name) ? 'sendRate' : 'bundleName');
        if (valid) expect(backup.updateSendRate(name as string, rate as number)).toBe(false);
      }),
      RUNS,
    );
    // Regression: a whole number past 2^53 was refused as "not a whole number" instead of clamped to 800.
    expect(backup.updateSendRate('com.example.notes', 1e20)).toBe(false);
  });

  it('getBackupInfo: 401 at once unless a bundle name', () => {
    fc.assert(
      fc.property(anyName, (name) => {
        fc.pre(!okBundleName(name)); // a valid name would ask the (absent) device
        expect401Unless(false, () => backup.getBackupInfo(name as string), 'bundleToBackup');
      }),
      RUNS,
    );
  });

  it('getLocalCapabilities(dataList): 401 at once unless IncrementalBackupTime[] (≤ 10 000, names, times ≥ 0)', () => {
    const entry = fc.record({ bundleName: anyName, lastIncrementalTime: anyNumber, extra: anything }, { requiredKeys: [] });
    const dataList = fc.oneof(
      fc.array(entry, { maxLength: 4 }),
      fc.array(fc.record({ bundleName: validName, lastIncrementalTime: fc.nat() }), { maxLength: 3 }),
      anything,
    );
    fc.assert(
      fc.property(dataList, (list) => {
        fc.pre(typeof list !== 'function' && list !== undefined); // those are the callback and plain forms
        expect401Unless(okDataList(list), () => backup.getLocalCapabilities(list as never), 'dataList');
      }),
      RUNS,
    );
    expect401Unless(false, () => backup.getLocalCapabilities(Array.from({ length: 10_001 }, () => ({ bundleName: 'a', lastIncrementalTime: 0 }))), 'dataList');
  });

  it('getBackupVersion answers the same JSON whatever it is given', () => {
    fc.assert(
      fc.property(fc.array(anything, { maxLength: 3 }), (args) => {
        expect(JSON.parse((backup.getBackupVersion as (...a: unknown[]) => string)(...args))).toEqual({ backupVersion: '16.0' });
      }),
      RUNS,
    );
  });
});

// ---------------------------------------------------------------- constructors

describe('session constructors', () => {
  const classes = [
    ['SessionBackup', (cb: unknown, o: unknown) => new backup.SessionBackup(cb as GeneralCallbacks, o as never)],
    ['SessionRestore', (cb: unknown, o: unknown) => new backup.SessionRestore(cb as GeneralCallbacks, o as never)],
    ['IncrementalBackupSession', (cb: unknown, o: unknown) => new backup.IncrementalBackupSession(cb as GeneralCallbacks, o as never)],
  ] as const;

  for (const [name, make] of classes) {
    it(`${name}(callbacks, options): 401 for callbacks without the five functions or with a non-function hook, and for bad options`, () => {
      fc.assert(
        fc.property(callbacksArb, optionsArb, (cb, options) => {
          const arg = okCallbacks(cb) ? 'options' : 'callbacks';
          expect401Unless(okCallbacks(cb) && okOptions(options), () => make(cb, options), arg);
        }),
        { ...RUNS, numRuns: 80 },
      );
    });
  }

  it('options.sessionId is never a path: it names folders on the device (regression: "../.." was taken as is)', () => {
    for (const sessionId of ['../..', 'a/b', '..', '/abs', '', 'x'.repeat(201), 'a\nb']) {
      expect401Unless(false, () => new backup.SessionBackup(callbacks(), { sessionId }), 'options.sessionId');
    }
    // A non-object options used to be read as one (null crashed with a TypeError).
    expect401Unless(false, () => new backup.SessionBackup(callbacks(), null as never), 'options');
    expect401Unless(false, () => new backup.SessionBackup(callbacks(), 'x' as never), 'options');
  });

  it('attach(sessionId, callbacks, options): the same checks, the session ID first', () => {
    fc.assert(
      fc.property(anyName, callbacksArb, optionsArb, (sessionId, cb, options) => {
        const valid = okSessionId(sessionId) && okOptions(options) && okCallbacks(cb);
        const arg = !okSessionId(sessionId) ? 'sessionId' : !okOptions(options) ? 'options' : 'callbacks';
        expect401Unless(valid, () => backup.SessionBackup.attach(sessionId as string, cb as GeneralCallbacks, options as never), arg);
      }),
      { ...RUNS, numRuns: 80 },
    );
  });
});

// ---------------------------------------------------------------- session methods

describe('session methods', () => {
  it('SessionBackup.appendBundles: 401 unless 1–10 000 bundle names, infos JSON-object strings (no more than the names), ≤ 1 MiB in all', () => {
    fc.assert(
      fc.property(anyBundleList, anyInfos, (list, infos) => {
        const valid =
          okBundleList(list) && okInfos(infos, (list as unknown[]).length) && bytes([...(list as unknown[]), ...((infos as unknown[]) ?? [])]) <= 1024 * 1024;
        const arg = !okBundleList(list) ? 'bundlesToBackup' : !okInfos(infos, (list as unknown[]).length) ? 'infos' : 'bundlesToBackup and infos';
        // A fresh session each time: the first accepted call would make later ones 13900001.
        expect401Unless(
          valid,
          () => new backup.SessionBackup(callbacks(), { attachTo: 'never-bound' }).appendBundles(list as string[], infos as string[]),
          arg,
        );
      }),
      { ...RUNS, numRuns: 100 },
    );
  });

  it('IncrementalBackupSession.appendBundles: 401 unless IncrementalBackupData[] (times ≥ 0, integer fds and priorities, parameters a JSON string ≤ 120 KiB)', () => {
    const params = fc.oneof(jsonObjectString, fc.constantFrom('{', 'not json', 'a\0b', `"${'x'.repeat(130 * 1024)}"`, '"ok"'), anything);
    const entry = fc.oneof(
      fc.record(
        { bundleName: anyName, lastIncrementalTime: anyNumber, manifestFd: anyNumber, parameters: params, priority: anyNumber, extra: anything },
        { requiredKeys: [] },
      ),
      fc.record({
        bundleName: validName,
        lastIncrementalTime: fc.constant(0),
        manifestFd: fc.constant(-1),
        priority: fc.option(fc.integer(), { nil: undefined }),
      }),
      anything,
    );
    const okEntry = (e: unknown) =>
      isObject(e) &&
      okBundleName(e.bundleName) &&
      okTime(e.lastIncrementalTime) &&
      okSafeInt(e.manifestFd) &&
      (e.parameters === undefined || (okJson(e.parameters) && Buffer.byteLength(e.parameters as string) <= 120 * 1024)) &&
      (e.priority === undefined || okSafeInt(e.priority));
    fc.assert(
      fc.property(fc.oneof(fc.array(entry, { maxLength: 4 }), anything), anyInfos, (list, infos) => {
        const okList = Array.isArray(list) && list.length >= 1 && list.length <= 10_000 && list.every(okEntry);
        const valid = okList && okInfos(infos, (list as unknown[]).length);
        const arg = !okList ? 'bundlesToBackup' : 'infos';
        // Accepted ones go on to read their manifest fds or to the service, asynchronously; they write nothing here.
        expect401Unless(valid, () => incrementalSession.appendBundles(list as never, infos as string[]), arg);
      }),
      { ...RUNS, numRuns: 100 },
    );
  });

  it('SessionRestore.appendBundles: 401 unless an fd (whole number ≥ 0), bundle names and infos', () => {
    fc.assert(
      fc.property(anyNumber, anyBundleList, anyInfos, (fd, list, infos) => {
        const okLists = okBundleList(list) && okInfos(infos, (list as unknown[]).length);
        const valid = okSafeInt(fd, 0) && okLists && bytes([...(list as unknown[]), ...((infos as unknown[]) ?? [])]) <= 1024 * 1024;
        const arg = !okSafeInt(fd, 0) ? 'remoteCapabilitiesFd' : !okBundleList(list) ? 'bundlesToRestore' : !okLists ? 'infos' : 'bundlesToRestore and infos';
        // With a valid fd the capability file is read, asynchronously: 13900020 for these fds (none is one).
        expect401Unless(valid, () => restoreSession.appendBundles(fd as number, list as string[], infos as string[]), arg);
      }),
      { ...RUNS, numRuns: 100 },
    );
  });

  it('regression: an overlong uri is an invalid uri (13900020, cut short in the message), not a parameter error (401)', async () => {
    const err = await rejection(restoreSession.getFileHandle({ bundleName: 'com.example.notes', uri: 'a'.repeat(256) }));
    expect(err.code).toBe(13900020);
    expect(err.message).toBe(`Invalid argument: uri "${'a'.repeat(80)}…" is 256 characters long; at most 255`);
  });

  it('getFileHandle / publishFile: 401 unless {bundleName, uri: string}; then 13900020 for a uri that is a path, has other characters or is over 255 long', async () => {
    const uri = fc.oneof(
      fc.stringMatching(/^[0-9A-Za-z_.]{1,40}$/),
      fc.constantFrom(
        '',
        '.',
        '..',
        '../x',
        'a/b',
        '/etc/passwd',
        'a\0b',
        'ü.tar',
        'part.0.tar',
        'manage.json',
        'a'.repeat(255),
        'a'.repeat(256),
        'a'.repeat(1_000_000),
        'a b',
        'a\\b',
      ),
      fc.string({ unit: 'binary', maxLength: 30 }),
    );
    const meta = fc.oneof(
      { arbitrary: fc.record({ bundleName: validName, uri }), weight: 4 },
      { arbitrary: fc.record({ bundleName: anyName, uri: fc.oneof(uri, anything), extra: anything }, { requiredKeys: [] }), weight: 2 },
      { arbitrary: anything, weight: 1 },
    );
    await fc.assert(
      fc.asyncProperty(meta, fc.boolean(), async (m, publish) => {
        const okMeta = isObject(m) && okBundleName(m.bundleName) && typeof m.uri === 'string';
        const call = () => (publish ? restoreSession.publishFile(m as never) : restoreSession.getFileHandle(m as never));
        expect401Unless(okMeta, call, 'fileMeta');
        if (!okMeta) return;
        const err = await rejection(call());
        const u = (m as { uri: string }).uri;
        if (okUri(u, publish)) {
          expect(err.code, err.message).toBe(13600001); // passed every check: only the service is missing
        } else {
          expect(err.code).toBe(13900020);
          expect(err.message).toMatch(/^Invalid argument: uri "/);
          expect(err.message.length).toBeLessThan(300); // an overlong uri is cut short in the message
        }
      }),
      { ...RUNS, numRuns: 100 },
    );
  });

  it('cancel, cleanBundleTempDir, getCompatibilityInfo, getBackupDataSize: 401 for bad arguments; cancel of a bundle not in the session → 13500012', () => {
    fc.assert(
      fc.property(anyName, fc.oneof(fc.string({ maxLength: 20 }), anything, fc.constant('x'.repeat(1024 * 1024 + 1))), (name, extInfo) => {
        const sessions = [backupSession, restoreSession, incrementalSession];
        for (const s of sessions) {
          expect401Unless(okBundleName(name), () => s.cancel(name as string), 'bundleName');
          if (okBundleName(name)) expect(s.cancel(name as string)).toBe(13500012);
          expect401Unless(okBundleName(name), () => s.cleanBundleTempDir(name as string), 'bundleName');
          const okExt = typeof extInfo === 'string' && extInfo.length <= 1024 * 1024;
          expect401Unless(
            okBundleName(name) && okExt,
            () => s.getCompatibilityInfo(name as string, extInfo as string),
            okBundleName(name) ? 'extInfo' : 'bundleName',
          );
        }
      }),
      RUNS,
    );
    const entry = fc.record({ bundleName: anyName, lastIncrementalTime: anyNumber }, { requiredKeys: [] });
    fc.assert(
      fc.property(fc.oneof(fc.boolean(), anything), fc.oneof(fc.array(entry, { maxLength: 3 }), anything), (precise, list) => {
        for (const s of [backupSession, incrementalSession]) {
          const arg = typeof precise !== 'boolean' ? 'isPreciseScan' : 'dataList';
          expect401Unless(typeof precise === 'boolean' && okDataList(list), () => s.getBackupDataSize(precise as boolean, list as never), arg);
        }
      }),
      RUNS,
    );
  });

  it('a callback that throws does not end the process (regression: its rejection went unhandled)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      await new Promise<void>((resolve) =>
        new backup.SessionBackup(callbacks(), { attachTo: 'never-bound-2' }).appendBundles(['com.example.notes'], () => {
          resolve();
          throw new Error('the tool callback failed');
        }),
      );
      await new Promise((r) => setTimeout(r, 50)); // the warning is emitted on a later tick
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.some((w) => w.includes('the tool callback failed'))).toBe(true);
  });
});

// ---------------------------------------------------------------- capability files (real fds)

let fileNo = 0;
/** A real file holding `content`, open for reading. */
function fdOf(content: string | Uint8Array): number {
  const file = path.join(root, `f${fileNo++}`);
  writeFileSync(file, content);
  return openSync(file, 'r');
}

describe('capability files, as fds of real files', () => {
  it('garbage, truncated JSON and valid JSON of the wrong shape → 13900020 naming the problem; valid ones are read from the start, the offset left as it was', () => {
    fc.assert(
      fc.property(capabilityContent, fc.boolean(), ({ text, valid }, readFirst) => {
        const fd = fdOf(text);
        try {
          // A tool that looked at the file first leaves the offset at its end.
          if (readFirst) readSync(fd, Buffer.alloc(1 << 16));
          const err = thrown(() => readCapabilityFile(fd));
          if (valid) {
            expect(err, err?.message).toBeUndefined();
            expect(readCapabilityFile(fd)).toEqual(JSON.parse(typeof text === 'string' ? text : ''));
          } else {
            expect(err?.code).toBe(13900020);
            expect(err!.message).toMatch(/^Invalid argument: the capability file \(fd \d+\) (is not JSON|is not valid: )/);
          }
          // The offset is untouched: what is left to read is what was left before.
          const rest = readSync(fd, Buffer.alloc(1 << 16));
          expect(rest).toBe(readFirst ? 0 : Buffer.byteLength(text as string));
        } finally {
          closeSync(fd);
        }
      }),
      FILE_RUNS,
    );
  });

  it('regression: a capability fd the tool has already read to its end is read from the start (it was taken as empty: "not JSON")', () => {
    const doc = { backupVersion: '16.0', systemFullName: 'x', deviceType: 'default', bundleInfos: [] };
    const fd = fdOf(JSON.stringify(doc));
    try {
      readSync(fd, Buffer.alloc(1024));
      expect(readCapabilityFile(fd)).toEqual(doc);
    } finally {
      closeSync(fd);
    }
  });

  it('fds that are no capability file at all → 13900020: closed, a folder, write-only, over the size limit, /dev/zero', () => {
    const closed = fdOf('{}');
    closeSync(closed);
    const dir = openSync(root, 'r');
    writeFileSync(path.join(root, 'wo'), '{"backupVersion":"16.0"}');
    const writeOnly = openSync(path.join(root, 'wo'), 'a');
    // Sparse: 64 MiB + 1 of nothing, never read.
    const huge = openSync(path.join(root, 'huge'), 'w+');
    ftruncateSync(huge, 64 * 1024 * 1024 + 1);
    // Regression: /dev/zero was read "to its end" into memory until the process died.
    const zero = openSync('/dev/zero', 'r');
    try {
      for (const fd of [closed, dir, writeOnly, huge, zero]) {
        const err = thrown(() => readCapabilityFile(fd));
        expect(err?.code, `fd ${fd}`).toBe(13900020);
        expect(err!.message).toMatch(
          /^Invalid argument: the capability file \(fd \d+\) (cannot be read: E[A-Z]+|is not a regular file|is 67108865 bytes; at most 67108864)$/,
        );
      }
    } finally {
      for (const fd of [dir, writeOnly, huge, zero]) closeSync(fd);
    }
  });
});

// ---------------------------------------------------------------- base manifests (real fds)

describe('base manifests of an incremental backup, as fds of real files', () => {
  it('garbage, truncated, wrong-schema and other-bundle manifests → 13900020 naming the bundle; valid ones pass; nothing is written', async () => {
    const bundleName = 'com.example.notes';
    await fc.assert(
      fc.asyncProperty(manifestCase, async (k) => {
        const content = await manifestContent(k, bundleName, root);
        const fd = fdOf(content);
        try {
          const err = await checkBaseManifest(fd, bundleName).then(
            () => undefined,
            (e: unknown) => e as BusinessError,
          );
          if (k.how === 'valid') expect(err, err?.message).toBeUndefined();
          else {
            expect(err, `${k.how} accepted`).toBeInstanceOf(BusinessError);
            expect(err!.code).toBe(13900020);
            expect(err!.message.startsWith(`Invalid argument: the manifest of ${bundleName} (manifestFd ${fd}) is not valid: `), err!.message).toBe(true);
          }
        } finally {
          closeSync(fd);
        }
        expect(readdirSync(stateDir)).toEqual([]);
      }),
      FILE_RUNS,
    );
  });

  it('fds that hold no manifest → 13900020: closed, a folder, write-only, a device (never read until EOF from a pipe, terminal or /dev/zero)', async () => {
    const closed = fdOf('x');
    closeSync(closed);
    const dir = openSync(root, 'r');
    writeFileSync(path.join(root, 'wo2'), 'x');
    const writeOnly = openSync(path.join(root, 'wo2'), 'a');
    const zero = openSync('/dev/zero', 'r');
    try {
      for (const fd of [closed, dir, writeOnly, zero]) {
        const err = await rejection(checkBaseManifest(fd, 'com.example.notes'));
        expect(err.code, `fd ${fd}`).toBe(13900020);
        expect(err.message).toMatch(/^Invalid argument: the manifest of com\.example\.notes \(manifestFd \d+\) is not valid: /);
      }
    } finally {
      for (const fd of [dir, writeOnly, zero]) closeSync(fd);
    }
  });
});
