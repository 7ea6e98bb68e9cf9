/**
 * The repository library's pure parts: tags, the keep plan that never cuts a
 * chain, chain resolution by session, bundle states and diffs, restic
 * versions, the child's environment (secrets only there) and redaction.
 */
import { describe, expect, it } from 'vitest';
import { baseOf, chainOf } from '../../engine/repository/chain.js';
import { diffStates, stateFromIndex } from '../../engine/repository/bundleState.js';
import { passwordSetting, resticEnvironment } from '../../engine/repository/environment.js';
import { ChainBroken, NoPassword, redactRepository } from '../../engine/repository/errors.js';
import { planForget, policyArgs } from '../../engine/repository/forgetPlan.js';
import { parseVersion, versionAtLeast } from '../../engine/repository/resticBinary.js';
import { parseSnapshot, snapshotTags, type SnapshotInfo } from '../../engine/repository/snapshotTags.js';
import { exitError } from '../../engine/repository/resticProcess.js';
import { RepositoryLocked, RepositoryNotFound, ResticFailed, WrongPassword } from '../../engine/repository/errors.js';
import type { ManageIndex } from '../../common/manageIndex.js';

function snap(id: string, session: string, time: string, base?: { id: string; sessionId: string }, device = 'dev'): SnapshotInfo {
  const tags = snapshotTags({ device, sessionId: session, kind: base ? 'incremental' : 'backup', bundles: ['com.a'], ...(base ? { base } : {}) });
  return parseSnapshot({ id, short_id: id.slice(0, 8), time, hostname: device, tags })!;
}

describe('snapshot tags', () => {
  it('round-trip through restic snapshot JSON, and are refused with commas or spaces', () => {
    const tags = snapshotTags({
      device: 'phone-1',
      sessionId: 's1',
      kind: 'incremental',
      bundles: ['com.a', 'com.b'],
      partial: true,
      base: { id: 'abcd1234', sessionId: 's0' },
    });
    expect(tags).toEqual([
      'ohbackup',
      'device=phone-1',
      'session=s1',
      'kind=incremental',
      'outcome=partial',
      'bundle=com.a',
      'bundle=com.b',
      'base=abcd1234',
      'base-session=s0',
    ]);
    const s = parseSnapshot({
      id: 'f'.repeat(64),
      time: '2026-01-01T00:00:00Z',
      hostname: 'phone-1',
      tags,
      summary: { total_bytes_processed: 10, data_added: 4 },
    });
    expect(s).toMatchObject({
      device: 'phone-1',
      sessionId: 's1',
      kind: 'incremental',
      bundles: ['com.a', 'com.b'],
      partial: true,
      base: { id: 'abcd1234', sessionId: 's0' },
      size: 10,
      dataAdded: 4,
    });
    expect(parseSnapshot({ id: 'x', tags: ['other'] })).toBeUndefined();
    expect(() => snapshotTags({ device: 'a,b', sessionId: 's', kind: 'backup', bundles: [] })).toThrow(/comma/);
  });
});

describe('chains and the keep plan', () => {
  const full = snap('1'.repeat(64), 'sF', '2026-01-01T00:00:00Z');
  const inc1 = snap('2'.repeat(64), 'sI1', '2026-01-02T00:00:00Z', { id: full.id, sessionId: 'sF' });
  const inc2 = snap('3'.repeat(64), 'sI2', '2026-01-03T00:00:00Z', { id: inc1.id, sessionId: 'sI1' });
  const older = snap('0'.repeat(64), 'sO', '2025-12-31T00:00:00Z');
  const all = [older, full, inc1, inc2];

  it('resolves a base by session, the ID only a hint (copies get new IDs)', () => {
    const copiedFull = { ...full, id: '9'.repeat(64), shortId: '99999999' };
    expect(baseOf(inc1, [copiedFull, inc1])!.id).toBe(copiedFull.id);
    expect(chainOf(inc2, all).map((s) => s.sessionId)).toEqual(['sF', 'sI1', 'sI2']);
    expect(() => chainOf(inc2, [inc2, full])).toThrow(ChainBroken);
  });

  it('keeps every base of a kept increment, says why, and forgets only what no kept increment needs', () => {
    const plan = planForget(all, new Map([[inc2.id, ['last snapshot']]]), [older.id, full.id, inc1.id]);
    const by = new Map(plan.map((d) => [d.snapshot.sessionId, d]));
    expect(by.get('sI2')).toMatchObject({ keep: true, reasons: ['last snapshot'] });
    expect(by.get('sI1')).toMatchObject({ keep: true, reasons: [`base of ${inc2.shortId}, which is kept`] });
    expect(by.get('sF')).toMatchObject({ keep: true, reasons: [`base of ${inc1.shortId}, which is kept`] });
    expect(by.get('sO')!.keep).toBe(false);
    // An increment may go while its base stays.
    const p2 = planForget(all, new Map([[full.id, ['daily snapshot']]]), [older.id, inc1.id, inc2.id]);
    expect(
      p2
        .filter((d) => !d.keep)
        .map((d) => d.snapshot.sessionId)
        .sort(),
    ).toEqual(['sI1', 'sI2', 'sO']);
  });

  it('policy flags', () => {
    expect(policyArgs({ keepLast: 1, keepDaily: 7, keepWithin: '30d' })).toEqual(['--keep-last', '1', '--keep-daily', '7', '--keep-within', '30d']);
    expect(() => policyArgs({})).toThrow(/at least one/);
    expect(() => policyArgs({ keepLast: -1 })).toThrow();
  });
});

describe('bundle states', () => {
  const e = (path: string, sha = 'a'.repeat(64), mtimeMs = 1000, mode = 0o644) => ({ path, kind: 'file' as const, size: 1, mode, mtimeMs, sha256: sha });
  const full: ManageIndex = {
    version: 1,
    bundleName: 'com.a',
    createdAt: '',
    files: [
      {
        uri: 'part.0.tar',
        kind: 'tar',
        size: 0,
        sha256: '',
        entries: [{ path: 'd', kind: 'dir', size: 0, mode: 0o755, mtimeMs: 1, sha256: '' }, e('d/x'), e('keep'), e('touch'), e('edit')],
      },
    ],
    skipped: [],
    totals: { files: 4, dirs: 1, bytes: 4 },
  };
  const inc: ManageIndex = {
    ...full,
    files: [{ uri: 'part.0.tar', kind: 'tar', size: 0, sha256: '', entries: [e('edit', 'b'.repeat(64)), e('new')] }],
    incremental: { baseTime: 0, deleted: [{ path: 'd', kind: 'dir' }], touched: [e('touch', 'a'.repeat(64), 5000)] },
  };
  it('an increment applies over its base; diff tells new, changed, deleted, touched', () => {
    const a = stateFromIndex(full);
    const b = stateFromIndex(inc, a);
    expect([...b.keys()].sort()).toEqual(['edit', 'keep', 'new', 'touch']);
    expect(diffStates('com.a', a, b)).toEqual({ bundleName: 'com.a', new: ['new'], changed: ['edit'], deleted: ['d', 'd/x'], touched: ['touch'] });
  });
});

describe('restic itself', () => {
  it('versions', () => {
    expect(parseVersion('0.18.1')).toEqual([0, 18, 1]);
    expect(versionAtLeast('0.18.1', '0.18.0')).toBe(true);
    expect(versionAtLeast('0.14.0', '0.18.0')).toBe(false);
    expect(versionAtLeast('1.0.0-dev', '0.18.0')).toBe(true);
    expect(versionAtLeast('garbage', '0.18.0')).toBe(false);
  });

  it('the repository and password reach restic only in its environment, one password setting at a time', () => {
    const env = resticEnvironment({
      repository: 's3:http://h/b',
      passwordFile: '/p',
      env: { PATH: '/bin', RESTIC_PASSWORD: 'x', RESTIC_REPOSITORY: 'elsewhere', AWS_ACCESS_KEY_ID: 'k' },
    });
    expect(env).toMatchObject({ RESTIC_REPOSITORY: 's3:http://h/b', RESTIC_PASSWORD_FILE: '/p', AWS_ACCESS_KEY_ID: 'k', PATH: '/bin' });
    expect(env.RESTIC_PASSWORD).toBeUndefined();
    expect(passwordSetting({ repository: 'r', env: { RESTIC_PASSWORD_COMMAND: 'pass show x', RESTIC_PASSWORD: 'y' } })).toEqual({
      name: 'RESTIC_PASSWORD_COMMAND',
      value: 'pass show x',
    });
    expect(() => passwordSetting({ repository: 'r', env: {} })).toThrow(NoPassword);
    const copy = resticEnvironment({ repository: 'dst', env: { RESTIC_PASSWORD: 'a' } }, {}, { repository: 'src', env: { RESTIC_PASSWORD_FILE: '/src-pw' } });
    expect(copy).toMatchObject({ RESTIC_REPOSITORY: 'dst', RESTIC_PASSWORD: 'a', RESTIC_FROM_REPOSITORY: 'src', RESTIC_FROM_PASSWORD_FILE: '/src-pw' });
  });

  it("exit codes become errors that say what happened, without a URL's credentials", () => {
    const ctx = { binary: 'restic', location: { repository: 'rest:https://u:secret@h/r' } };
    const run = (code: number, stderr: string[] = [], missing = false) => exitError(ctx, 'snapshots', { code, stderr, missing });
    expect(run(0)).toBeUndefined();
    expect(run(10)).toBeInstanceOf(RepositoryNotFound);
    expect(run(12)).toBeInstanceOf(WrongPassword);
    expect(run(11)).toBeInstanceOf(RepositoryLocked);
    expect(run(0, [], true)).toBeInstanceOf(RepositoryNotFound);
    const other = run(1, ['{"message_type":"exit_error","code":1,"message":"Fatal: at rest:https://u:secret@h/r it broke"}'])!;
    expect(other).toBeInstanceOf(ResticFailed);
    expect(other.message).toContain('it broke');
    expect(other.message).not.toContain('secret');
    expect(redactRepository('rest:https://u:secret@h/r')).toBe('rest:https://***@h/r');
  });
});
