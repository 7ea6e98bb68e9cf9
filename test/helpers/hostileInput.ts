/**
 * Hostile input for the property tests of the tool library's public calls
 * (test/unit/validateProperties.test.ts, test/integration/badInput.test.ts):
 * the rules each argument must follow, restated here from api.md (not from
 * the schemas they test), and fast-check arbitraries that draw valid and
 * hostile values alike.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { expect } from 'vitest';
import { writeManifest } from '../../engine/formats/manifest.js';
import { BusinessError } from '../../common/businessError.js';
import type { Capabilities } from '../../common/capabilities.js';
import type { ManifestEntry } from '../../common/manifest.js';

/** Every property runs with this seed: a failure replays the same way. */
export const SEED = 8_2024;

// ---------------------------------------------------------------- the rules (oracles), from api.md

export const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
export const okBundleName = (x: unknown) =>
  typeof x === 'string' && x.length >= 1 && x.length <= 255 && /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(x) && !x.includes('..');
export const okTimeout = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 14_400_000;
export const okSendRate = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
export const okSafeInt = (x: unknown, min = -Infinity, max = Infinity) => typeof x === 'number' && Number.isSafeInteger(x) && x >= min && x <= max;
export const okTime = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x >= 0;
/** Any string: infos are opaque to the service (client/infos.ts reads only what parses). */
export const okInfo = (x: unknown) => typeof x === 'string';
export const okJson = (x: unknown) => {
  if (typeof x !== 'string') return false;
  try {
    JSON.parse(x);
    return true;
  } catch {
    return false;
  }
};
export const bytes = (strings: unknown[]) => strings.reduce<number>((n, s) => n + (typeof s === 'string' ? Buffer.byteLength(s) : 0), 0);
export const okInfos = (infos: unknown, count: number) => infos === undefined || (Array.isArray(infos) && infos.length <= count && infos.every(okInfo));
export const okBundleList = (x: unknown) => Array.isArray(x) && x.length >= 1 && x.length <= 10_000 && x.every(okBundleName);
export const okDataList = (x: unknown) =>
  Array.isArray(x) && x.length <= 10_000 && x.every((e) => isObject(e) && okBundleName(e.bundleName) && okTime(e.lastIncrementalTime));
export const okSessionId = (x: unknown) =>
  typeof x === 'string' && x.length >= 1 && x.length <= 200 && /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/.test(x) && !x.includes('..');
export const REQUIRED_CALLBACKS = ['onFileReady', 'onBundleBegin', 'onBundleEnd', 'onAllBundlesEnd', 'onBackupServiceDied'] as const;
export const OPTIONAL_CALLBACKS = ['onResultReport', 'onProcess', 'onBackupSizeReport'] as const;
export const okCallbacks = (x: unknown) =>
  isObject(x) &&
  REQUIRED_CALLBACKS.every((k) => typeof x[k] === 'function') &&
  OPTIONAL_CALLBACKS.every((k) => x[k] === undefined || typeof x[k] === 'function');
export const okOptions = (x: unknown) => {
  if (x === undefined) return true;
  if (!isObject(x)) return false;
  const opt = (k: string, ok: (v: unknown) => boolean) => x[k] === undefined || ok(x[k]);
  return (
    opt('sessionId', okSessionId) &&
    opt('attachTo', okSessionId) &&
    opt('taskQueue', (v) => typeof v === 'string' && v.length >= 1 && v.length <= 1000) &&
    opt('maxConcurrentBundles', (v) => okSafeInt(v, 1, 1000)) &&
    opt('cursorFile', (v) => typeof v === 'string' && v.length >= 1 && v.length <= 4096) &&
    opt('maxOpenFds', (v) => okSafeInt(v, 1, 1_000_000)) &&
    opt('fdWaitMs', (v) => okSafeInt(v, 0, 14_400_000))
  );
};
export const URI_RULE = /^[0-9A-Za-z_.]+$/;
export const okUri = (u: string, emptyAllowed: boolean) => (u === '' && emptyAllowed) || (u.length <= 255 && URI_RULE.test(u) && u !== '.' && u !== '..');

// ---------------------------------------------------------------- hostile values

export const anything = fc.anything({
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withTypedArray: true,
  withSparseArray: true,
  maxDepth: 2,
});
export const validName = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}$/).filter((s) => !s.includes('..'));
export const nastyString = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '.',
    '..',
    '../etc',
    '../../..',
    '/etc/passwd',
    'a/b',
    'a\\b',
    'a\0b',
    'a\nb',
    'com.example..x',
    '-a',
    'ü',
    '☃.app',
    '𝄞',
    'com.example.notes ',
    ' com.example.notes',
    'x'.repeat(256),
    'x'.repeat(100_000),
    'ａｂｃ',
    '\u202e',
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
);
export const anyName: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: validName, weight: 3 },
  { arbitrary: nastyString, weight: 3 },
  { arbitrary: anything, weight: 1 },
);
export const weirdNumber = fc.oneof(
  fc.constantFrom(
    Number.NaN,
    Infinity,
    -Infinity,
    -0,
    0,
    -1,
    0.5,
    1.5,
    1e20,
    2 ** 53 + 2,
    Number.MIN_VALUE,
    Number.MAX_VALUE,
    14_400_000,
    14_400_001,
    800,
    801,
  ),
  fc.double(),
  fc.integer(),
  fc.integer({ min: 0, max: 20_000_000 }),
);
export const anyNumber: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: weirdNumber, weight: 4 },
  { arbitrary: anything, weight: 1 },
  { arbitrary: fc.constantFrom('5', '0', true, null, 5n), weight: 1 },
);
export const jsonObjectString = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map((o) => JSON.stringify(o));
export const anyInfo: fc.Arbitrary<unknown> = fc.oneof(
  jsonObjectString,
  fc.constantFrom('', '{', '{"a":', 'null', '[]', '"x"', '1', 'true', '{"infos":[', '{}x', '\u0000', '{"a":1}'),
  fc.string({ unit: 'binary', maxLength: 30 }),
  anything,
);
export const anyInfos: fc.Arbitrary<unknown> = fc.oneof(fc.constant(undefined), fc.array(anyInfo, { maxLength: 4 }), anything);
export const hugeLists = fc.constantFrom(
  Array.from({ length: 10_001 }, (_, i) => `com.b${i}`),
  Array.from({ length: 10_000 }, (_, i) => `com.${'x'.repeat(120)}${i}`),
  Array.from({ length: 10_000 }, (_, i) => `com.b${i}`),
);
export const anyBundleList: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.array(anyName, { maxLength: 5 }), weight: 4 },
  { arbitrary: fc.array(validName, { minLength: 1, maxLength: 5 }), weight: 3 },
  { arbitrary: hugeLists, weight: 1 },
  { arbitrary: anything, weight: 1 },
);
export const fnOrNot = fc.oneof(
  fc.constant(() => undefined),
  anything,
);
export const callbacksArb: fc.Arbitrary<unknown> = fc.oneof(
  anything,
  // Every field present, some of the wrong type.
  fc.record(Object.fromEntries([...REQUIRED_CALLBACKS, ...OPTIONAL_CALLBACKS].map((k) => [k, fnOrNot]))),
  // Fields missing.
  fc.record(Object.fromEntries([...REQUIRED_CALLBACKS, ...OPTIONAL_CALLBACKS].map((k) => [k, fc.constant(() => undefined)])), { requiredKeys: [] }),
  // All there, plus extra fields.
  fc
    .dictionary(fc.string({ maxLength: 10 }), anything, { maxKeys: 3 })
    .map((extra) => ({ ...extra, ...Object.fromEntries(REQUIRED_CALLBACKS.map((k) => [k, () => undefined])) })),
);
export const optionsArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(undefined),
  anything,
  fc.record(
    {
      sessionId: fc.oneof(validName, anyName),
      attachTo: fc.oneof(validName, anyName),
      taskQueue: fc.oneof(validName, nastyString, anything),
      maxConcurrentBundles: anyNumber,
      cursorFile: fc.oneof(fc.constant('/tmp/cursor'), nastyString, anything),
      maxOpenFds: anyNumber,
      fdWaitMs: anyNumber,
      unknownExtra: anything,
    },
    { requiredKeys: [] },
  ),
);

// ---------------------------------------------------------------- helpers

/** What `fn` threw; fails the property if it threw something that is not a BusinessError. */
export function thrown(fn: () => unknown): BusinessError | undefined {
  try {
    const r = fn();
    // What passes the checks goes on to the (unreachable) service: keep its outcome from being unhandled.
    if (r instanceof Promise) r.catch(() => undefined);
  } catch (e) {
    expect(e).toBeInstanceOf(BusinessError);
    return e as BusinessError;
  }
  return undefined;
}

/** `fn` is refused with 401 and a message that names `arg`, or accepted, exactly as `valid` says. */
export function expect401Unless(valid: boolean, fn: () => unknown, arg: string): void {
  const err = thrown(fn);
  if (valid) {
    expect(err, `refused valid input: ${err?.message}`).toBeUndefined();
    return;
  }
  expect(err, `accepted invalid ${arg}`).toBeDefined();
  expect(err!.code).toBe(401);
  expect(err!.message.startsWith(`Parameter error: ${arg}`), err!.message).toBe(true);
  expect(err!.message.length).toBeLessThan(400);
}

export async function rejection(p: Promise<unknown>): Promise<BusinessError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BusinessError);
  return err as BusinessError;
}

// ---------------------------------------------------------------- capability files

export const bundleInfo = fc.record({
  name: validName,
  appIndex: fc.nat(5),
  versionCode: fc.nat(),
  versionName: fc.string({ maxLength: 8 }),
  spaceOccupied: fc.nat(),
  allToBackup: fc.boolean(),
  fullBackupOnly: fc.boolean(),
  extensionName: fc.string({ maxLength: 8 }),
  restoreDeps: fc.constantFrom('', 'com.a', 'com.a,com.b'),
  supportScene: fc.string({ maxLength: 8 }),
  extraInfo: fc.jsonValue({ maxDepth: 1 }),
  needToInstall: fc.boolean(),
});
export const capabilities: fc.Arbitrary<Capabilities> = fc.record({
  backupVersion: fc.constant('16.0'),
  systemFullName: fc.string({ maxLength: 10 }),
  deviceType: fc.constantFrom('default', 'phone', 'tablet'),
  bundleInfos: fc.array(bundleInfo, { minLength: 1, maxLength: 3 }),
});
/** Fields whose absence or wrong type makes a capability file invalid (extraInfo and increSpaceOccupied are optional). */
export const TOP_FIELDS = ['backupVersion', 'systemFullName', 'deviceType', 'bundleInfos'] as const;
export const INFO_FIELDS = [
  'name',
  'appIndex',
  'versionCode',
  'versionName',
  'spaceOccupied',
  'allToBackup',
  'fullBackupOnly',
  'extensionName',
  'restoreDeps',
  'supportScene',
  'needToInstall',
] as const;
/** A value of another JSON type than `v`'s (and for whole numbers ≥ 0: a negative or a fraction). */
export const wrongFor = (v: unknown, pick: number): unknown => {
  const others: unknown[] =
    typeof v === 'string'
      ? [1, true, null, [], {}]
      : typeof v === 'number'
        ? ['1', true, null, -1, -0.5]
        : typeof v === 'boolean'
          ? ['true', 1, null, {}]
          : ['x', 1, null, true];
  return others[pick % others.length];
};
/** A capability document made invalid in one way, and how. */
export const brokenCapabilities = fc
  .tuple(capabilities, fc.nat(), fc.nat(), fc.constantFrom('dropTop', 'wrongTop', 'dropInfo', 'wrongInfo', 'notObject', 'infosNotArray'))
  .map(([caps, i, j, how]) => {
    const doc: Record<string, unknown> = structuredClone(caps) as never;
    const info = (doc.bundleInfos as Array<Record<string, unknown>>)[i % caps.bundleInfos.length]!;
    const top = TOP_FIELDS[i % TOP_FIELDS.length]!;
    const field = INFO_FIELDS[j % INFO_FIELDS.length]!;
    switch (how) {
      case 'dropTop':
        delete doc[top];
        return JSON.stringify(doc);
      case 'wrongTop':
        doc[top] = wrongFor(doc[top], j);
        return JSON.stringify(doc);
      case 'dropInfo':
        delete info[field];
        return JSON.stringify(doc);
      case 'wrongInfo':
        info[field] = wrongFor(info[field], i);
        return JSON.stringify(doc);
      case 'notObject':
        return JSON.stringify([doc]);
      default:
        doc.bundleInfos = { ...(doc.bundleInfos as object) };
        return JSON.stringify(doc);
    }
  });

/** A capability file's content: garbage, truncated, of the wrong shape, or valid (`valid` says which). */
export const capabilityContent: fc.Arbitrary<{ text: string | Uint8Array; valid: boolean; how: string }> = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => ({ text: b as string | Uint8Array, valid: false, how: 'garbage bytes' })),
  fc.string({ unit: 'binary', maxLength: 80 }).map((text) => ({ text: text as string | Uint8Array, valid: false, how: 'garbage text' })),
  fc.tuple(capabilities, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })).map(([c, f]) => {
    const json = JSON.stringify(c);
    return { text: json.slice(0, Math.floor(json.length * f)) as string | Uint8Array, valid: false, how: 'truncated' };
  }),
  brokenCapabilities.map((text) => ({ text: text as string | Uint8Array, valid: false, how: 'wrong shape' })),
  capabilities.map((c) => ({ text: JSON.stringify(c, null, 1) as string | Uint8Array, valid: true, how: 'valid' })),
);

// ---------------------------------------------------------------- base manifests

export const SHA = 'ab'.repeat(32);
export const manifestEntries = fc
  .uniqueArray(
    fc.record({
      path: fc.stringMatching(/^[a-z]{1,6}(\/[a-z]{1,6}){0,2}$/),
      kind: fc.constantFrom('file', 'dir'),
      mode: fc.constantFrom(0o600, 0o644, 0o755),
      size: fc.nat(10_000),
      mtimeMs: fc.nat(),
    }),
    { minLength: 1, maxLength: 5, selector: (e) => e.path },
  )
  .map((list) =>
    list.map((e): ManifestEntry => ({ ...e, kind: e.kind as 'file' | 'dir', size: e.kind === 'dir' ? 0 : e.size, sha256: e.kind === 'dir' ? '' : SHA })),
  );

let manifestNo = 0;
/** A manifest as the real writer writes it, as text. */
export async function manifestText(dir: string, bundleName: string, entries: ManifestEntry[]): Promise<string> {
  const file = path.join(dir, `m${manifestNo++}.jsonl`);
  await writeManifest(file, { bundleName, time: 1_700_000_000 }, entries);
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  const n = readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  return buf.subarray(0, n).toString('utf8');
}

/** One way to make a line of a valid manifest wrong. */
export const MANIFEST_BREAKS: Array<[string, (lines: string[]) => void]> = [
  ['entry path with ..', (l) => (l[1] = JSON.stringify({ ...JSON.parse(l[1]!), path: 'a/../b' }))],
  ['absolute entry path', (l) => (l[1] = JSON.stringify({ ...JSON.parse(l[1]!), path: '/etc/passwd' }))],
  ['negative size', (l) => (l[1] = JSON.stringify({ ...JSON.parse(l[1]!), size: -1 }))],
  ['unknown kind', (l) => (l[1] = JSON.stringify({ ...JSON.parse(l[1]!), kind: 'link' }))],
  ['mode out of range', (l) => (l[1] = JSON.stringify({ ...JSON.parse(l[1]!), mode: 0o10000 }))],
  ['duplicate path', (l) => l.splice(2, 0, l[1]!)],
  ['header counts more', (l) => (l[0] = JSON.stringify({ ...JSON.parse(l[0]!), entries: 99 }))],
  ['other version', (l) => (l[0] = JSON.stringify({ ...JSON.parse(l[0]!), version: 2 }))],
  ['other format', (l) => (l[0] = JSON.stringify({ ...JSON.parse(l[0]!), format: 'tar' }))],
  ['header not an object', (l) => (l[0] = '[]')],
  ['line not JSON', (l) => (l[1] = `${l[1]}}`)],
];

/** A base manifest case: garbage, truncated, broken in one way, another bundle's, or valid. */
export const manifestCase = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => ({ how: 'garbage' as const, b })),
  fc.tuple(manifestEntries, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })).map(([e, f]) => ({ how: 'truncated' as const, e, f })),
  fc.tuple(manifestEntries, fc.nat(MANIFEST_BREAKS.length - 1)).map(([e, i]) => ({ how: 'broken' as const, e, i })),
  manifestEntries.map((e) => ({ how: 'otherBundle' as const, e })),
  manifestEntries.map((e) => ({ how: 'valid' as const, e })),
);
export type ManifestCase = typeof manifestCase extends fc.Arbitrary<infer T> ? T : never;

/** The bytes of a manifest case for `bundleName` (`dir`: where the real writer may work). */
export async function manifestContent(k: ManifestCase, bundleName: string, dir: string): Promise<string | Uint8Array> {
  if (k.how === 'garbage') return k.b;
  if (k.how === 'otherBundle') return manifestText(dir, `${bundleName}.other`, k.e);
  const text = await manifestText(dir, bundleName, k.e);
  // Never cut just the last newline: that leaves a valid manifest.
  if (k.how === 'truncated') return text.slice(0, Math.floor((text.length - 1) * k.f));
  if (k.how === 'broken') {
    const lines = text.trimEnd().split('\n');
    MANIFEST_BREAKS[k.i]![1](lines);
    return `${lines.join('\n')}\n`;
  }
  return text;
}
