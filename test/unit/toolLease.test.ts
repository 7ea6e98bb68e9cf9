/**
 * The tool lease's rules without a server (workflows/session/lease.ts; the
 * session's side of it is in sessionState.test.ts): when a silent tool counts
 * as gone, how a run whose session was ended elsewhere comes out, and the
 * command line's duration parser.
 */
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../cli/shared.js';
import { ErrorCode } from '../../common/errors.js';
import { ToolLease } from '../../workflows/session/lease.js';
import { BundleTally } from '../../client/runs/tally.js';

const A = 'com.a';
const B = 'com.b';

describe('ToolLease', () => {
  it('a tool is gone once silent for the whole timeout; every acknowledgement renews it; it carries over continue-as-new', () => {
    const lease = new ToolLease(3000, 1_000);
    expect(lease.remainingMs(1_000)).toBe(3000);
    expect(lease.expired(3_999)).toBe(false);
    lease.seen(2_000);
    expect(lease.remainingMs(4_000)).toBe(1000);
    expect(lease.expired(4_999)).toBe(false);
    expect(lease.expired(5_000)).toBe(true);
    expect(lease.attached(5_000)).toBe(false);
    // A timer never gets a zero or negative duration.
    expect(lease.remainingMs(9_000)).toBe(1);
    lease.seen(1_500); // an older ack (reordered) never moves it back
    expect(lease.lastSeen).toBe(2_000);
    expect(lease.silence(32_000)).toBe('tool silent for 30 s (tool timeout 3 s)');
    const next = new ToolLease(99, 50_000, structuredClone(lease.toCarried()));
    expect([next.timeoutMs, next.lastSeen]).toEqual([3000, 2_000]);
  });
});

describe('--tool-timeout DURATION', () => {
  it('reads ms, s, m and h (a bare number is seconds), 1 s to 4 h', () => {
    expect(['30s', '5m', '1.5h', '1500ms', '90', ' 2 m'].map(parseDuration)).toEqual([30_000, 300_000, 5_400_000, 1500, 90_000, 120_000]);
    for (const bad of ['', '0s', '999ms', '5 minutes', '-3s', '5h', 'abc']) expect(() => parseDuration(bad), bad).toThrow(/duration/);
  });
});

describe('a run whose session was ended elsewhere', () => {
  it('is partial (exit 3) with some bundle done and failed (exit 1) with none; its running bundles say why', () => {
    const some = new BundleTally([A, B]);
    some.begin(A);
    some.end(A);
    some.begin(B);
    const partial = some.closeOut({ interrupted: false, endedElsewhere: 'released by another client' });
    expect(partial).toMatchObject({ outcome: 'partial', endedElsewhere: 'released by another client' });
    expect(partial.bundles[1]).toMatchObject({
      state: 'failed',
      error: { code: ErrorCode.TASK_FAILED, message: 'The session was released by another client' },
    });
    const none = new BundleTally([A]);
    none.begin(A);
    expect(none.closeOut({ interrupted: false, endedElsewhere: 'released by another client' }).outcome).toBe('failed');
    const all = new BundleTally([A]);
    all.end(A);
    // Every bundle had ended done: the set is whole.
    expect(all.closeOut({ interrupted: false, endedElsewhere: 'released by another client' }).outcome).toBe('done');
  });
});
