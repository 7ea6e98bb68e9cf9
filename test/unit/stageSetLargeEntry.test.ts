/**
 * A slice entry above stageSet's whole-read size (4 MiB) is written as it is
 * read, its SHA-256 checked at the end: staged byte for byte, and refused when
 * a byte of it differs from the index.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SetMismatch } from '../../engine/repository/index.js';
import { stageSet } from '../../engine/repository/stageSet.js';
import { makePackedSet } from '../helpers/packedSet.js';

const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohbackup-stage-large-'));
afterAll(() => fsp.rm(root, { recursive: true, force: true }));

// Big files above 8 MiB only, so the 5 MiB file goes into the slice.
const LIMITS = { bigFileBytes: 8 << 20, sliceBytes: 32 << 20, sliceEntries: 200 };

describe('stageSet with an entry larger than a whole read', () => {
  it('stages it byte for byte, and refuses it when a byte differs from the index', async () => {
    const data = path.join(root, 'data');
    await fsp.mkdir(data);
    const large = randomBytes((5 << 20) + 100);
    await fsp.writeFile(path.join(data, 'a.txt'), 'small');
    await fsp.writeFile(path.join(data, 'z.bin'), large);
    const set = await makePackedSet({ bundles: { 'com.u.large': data }, out: path.join(root, 'set'), scratch: root, limits: LIMITS });

    const stage = path.join(root, 'stage');
    await fsp.mkdir(stage);
    const r = await stageSet(set.dir, stage);
    expect(r.files).toBe(2);
    expect((await fsp.readFile(path.join(stage, 'com.u.large', 'data', 'z.bin'))).equals(large)).toBe(true);
    expect(await fsp.readFile(path.join(stage, 'com.u.large', 'data', 'a.txt'), 'utf8')).toBe('small');

    const slice = path.join(set.dir, 'com.u.large', 'part.0.tar');
    const bytes = await fsp.readFile(slice);
    const at = bytes.indexOf(large.subarray(large.length - 64));
    expect(at).toBeGreaterThan(0);
    bytes[at + 10]! ^= 0xff;
    await fsp.writeFile(slice, bytes);
    const again = path.join(root, 'stage-again');
    await fsp.mkdir(again);
    const err = await stageSet(set.dir, again).catch((e: Error) => e);
    expect(err).toBeInstanceOf(SetMismatch);
    expect((err as Error).message).toMatch(/z\.bin's SHA-256 differs from the index/);
  });
});
