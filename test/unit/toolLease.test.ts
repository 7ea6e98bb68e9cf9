/**
 * The tool lease's rules without a server (workflows/session/lease.ts and the
 * session's side of it in state.ts): when a silent tool counts as gone, what an
 * abandoned session says its tool acknowledged, and how every bundle still ends
 * once at release; plus the command line's duration parser.
 */
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../cli/shared.js';
import { ErrorCode } from '../../common/errors.js';
import { ACKNOWLEDGED_URIS_NAMED, describeEnd, type EventBody } from '../../common/session.js';
import { ToolLease } from '../../workflows/session/lease.js';
import { SessionState } from '../../workflows/session/state.js';
import { BundleTally } from '../../client/runs/tally.js';

const A = 'com.a';
const B = 'com.b';
const C = 'com.c';
const file = (bundleName: string, fileIndex: number, size = 10): EventBody => ({
  type: 'fileReady',
  bundleName,
  fileIndex,
  uri: `f${fileIndex}`,
  size,
  path: `/tmp/${bundleName}/f${fileIndex}`,
});

/** A backup session with `names` appended, the first `run` of them running (begun). */
function session(names: string[], run: number) {
  const state = new SessionState('backup');
  state.countAppend();
  state.add(
    names.map((bundleName) => ({ bundleName })),
    new Map(),
  );
  for (const slot of state.takeStartable(run)) {
    slot.childStarted = true;
    state.accept({ type: 'bundleBegin', bundleName: slot.bundleName });
  }
  return state;
}

const seqOf = (state: SessionState) => state.log.page(0).lastSeq;

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

describe('SessionState: the tool lease', () => {
  it('counts per bundle what the tool acknowledged (files, bytes, the uris up to a cap, its end), each once', () => {
    const state = session([A], 1);
    state.accept(file(A, 0, 5));
    state.accept(file(A, 1, 7));
    state.accept({ type: 'fileReady', bundleName: A, fileIndex: 2, uri: 'bad', size: 3, path: '', error: { code: 13900005, message: 'x' } });
    state.ack(2); // begin + f0
    state.ack(2); // repeated: the idle heartbeat
    expect(state.slot(A)!.acknowledged).toEqual({ files: 1, bytes: 5, uris: ['f0'], ended: false });
    state.ack(seqOf(state));
    expect(state.slot(A)!.acknowledged).toEqual({ files: 2, bytes: 12, uris: ['f0', 'f1'], ended: false });
    state.accept({ type: 'bundleEnd', bundleName: A });
    state.ack(seqOf(state));
    expect(state.slot(A)!.acknowledged?.ended).toBe(true);

    const many = session([B], 1);
    for (let i = 0; i < ACKNOWLEDGED_URIS_NAMED + 5; i++) many.accept(file(B, i));
    many.ack(seqOf(many));
    expect(many.slot(B)!.acknowledged?.files).toBe(ACKNOWLEDGED_URIS_NAMED + 5);
    expect(many.slot(B)!.acknowledged?.uris).toHaveLength(ACKNOWLEDGED_URIS_NAMED);
  });

  it('abandoned: running bundles end with 13500010 and take no more files, queued ones begin and end with 13500011, a done one whose end the tool never saw failed; the account names what the tool had', () => {
    // A done and acknowledged; B running (one file acknowledged, one not); C queued.
    const state = session([A, B, C], 2);
    state.accept(file(A, 0));
    state.accept({ type: 'bundleEnd', bundleName: A });
    state.accept(file(B, 0, 4));
    state.ack(seqOf(state));
    state.accept(file(B, 1, 6)); // handed over, never acknowledged
    state.abandon('tool silent for 3 s (tool timeout 3 s)', '2026-01-01T00:00:00.000Z');
    expect(state.released).toBe(true);
    expect(state.endedBy).toBe('abandoned');
    state.accept(file(B, 2)); // after the abandon: dropped
    state.accept({ type: 'bundleEnd', bundleName: B, cancelled: true }); // its child, cancelled
    state.markNotStarted();
    state.announceAllEnded();
    const account = state.settleAbandoned()!;

    expect(state.slot(B)).toMatchObject({ state: 'failed', error: { code: ErrorCode.TASK_FAILED }, files: 1, bytes: 4 });
    expect(state.slot(B)!.error!.message).toMatch(/abandoned by its tool: tool silent for 3 s/);
    expect(state.slot(C)).toMatchObject({ state: 'notStarted', error: { code: ErrorCode.CANCEL_NOT_STARTED } });
    expect(state.slot(A)!.state).toBe('done');
    expect(account).toEqual({
      reason: 'tool silent for 3 s (tool timeout 3 s)',
      at: '2026-01-01T00:00:00.000Z',
      acknowledgedFiles: [
        { bundleName: A, files: 1, bytes: 10, uris: ['f0'], ended: true },
        { bundleName: B, files: 1, bytes: 4, uris: ['f0'], ended: false },
        { bundleName: C, files: 0, bytes: 0, uris: [], ended: false },
      ],
    });
    const events = state.log.unacked().map((e) => [e.type, 'bundleName' in e ? e.bundleName : '', 'error' in e ? e.error?.code : undefined]);
    expect(events).toEqual([
      ['fileReady', B, undefined],
      ['bundleEnd', B, ErrorCode.TASK_FAILED],
      ['bundleBegin', C, ErrorCode.CANCEL_NOT_STARTED],
      ['bundleEnd', C, ErrorCode.CANCEL_NOT_STARTED],
      ['allBundlesEnd', '', undefined],
    ]);
    expect(state.details()).toMatch(/^\*\*abandoned by its tool\*\* \(tool silent for 3 s/);

    // A done bundle whose end the tool never acknowledged cannot count as done.
    const unseen = session([A], 1);
    unseen.accept(file(A, 0));
    unseen.accept({ type: 'bundleEnd', bundleName: A });
    unseen.abandon('tool silent for 3 s', 'now');
    expect(unseen.settleAbandoned()!.acknowledgedFiles[0]).toMatchObject({ files: 0, ended: false });
    expect(unseen.slot(A)).toMatchObject({ state: 'failed', files: 0, error: { code: ErrorCode.TASK_FAILED } });
  });

  it('released: a queued bundle begins and ends with 13500011, one refused at append with its own reason; who released it is kept once', () => {
    const state = session([A, B], 1);
    state.add([{ bundleName: C, rejected: { code: 13500013, message: 'held' } }], new Map());
    state.release('another client');
    state.release('tool');
    expect(state.endedBy).toBe('another client');
    expect(state.settleAbandoned()).toBeUndefined();
    state.markNotStarted();
    const ends = state.log.unacked().filter((e) => e.type === 'bundleEnd');
    expect(ends.map((e) => [e.type === 'bundleEnd' && e.bundleName, e.type === 'bundleEnd' && e.error?.code])).toEqual([
      [B, ErrorCode.CANCEL_NOT_STARTED],
      [C, 13500013],
    ]);
    expect(state.details()).toMatch(/^\*\*released by another client\*\*/);
    expect(describeEnd({ endedBy: 'another client' })).toBe('released by another client');
    expect(describeEnd({ endedBy: 'abandoned', abandoned: { reason: 'tool silent for 3 s', at: '', acknowledgedFiles: [] } })).toBe(
      'abandoned by its tool (tool silent for 3 s)',
    );
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
