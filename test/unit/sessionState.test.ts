/**
 * The session's rules without a server: the order in which bundle events are
 * accepted (begin first, nothing after the end, a file index once), deferred
 * restore targets, delivery errors, scheduling, the request checks, and
 * continue-as-new.
 */
import { describe, expect, it } from 'vitest';
import { SessionState, type AppendedBundle } from '../../workflows/session/state.js';
import { ACKNOWLEDGED_URIS_NAMED, describeEnd, type EventBody, type SessionKind } from '../../common/session.js';
import { ErrorCode } from '../../common/errors.js';

const A = 'com.a';
const B = 'com.b';
const begin = (bundleName: string, error?: { code: number; message: string }): EventBody => ({ type: 'bundleBegin', bundleName, ...(error ? { error } : {}) });
const file = (bundleName: string, fileIndex: number, size = 10): EventBody => ({
  type: 'fileReady',
  bundleName,
  fileIndex,
  uri: `f${fileIndex}`,
  size,
  path: `/tmp/${bundleName}/f${fileIndex}`,
});
const end = (bundleName: string, extra: { error?: { code: number; message: string }; cancelled?: boolean } = {}): EventBody => ({
  type: 'bundleEnd',
  bundleName,
  ...extra,
});
const result = (bundleName: string): EventBody => ({ type: 'resultReport', bundleName, result: '{}' });

function session(kind: SessionKind, bundles: AppendedBundle[], held = new Map()) {
  const state = new SessionState(kind);
  state.countAppend();
  state.add(bundles, held);
  return state;
}

/** A session whose bundles are all marked running (their children started). */
function running(kind: SessionKind, names: string[]) {
  const state = session(
    kind,
    names.map((bundleName) => ({ bundleName })),
  );
  const started = state.takeStartable(names.length);
  for (const slot of started) slot.childStarted = true;
  return state;
}

/** The emitted events as `type bundle [fileIndex]`. */
const stream = (state: SessionState) =>
  state.log.page(0).events.map((e) => [e.type, 'bundleName' in e ? e.bundleName : '', ...(e.type === 'fileReady' ? [e.fileIndex] : [])].join(' ').trim());

const codeOf = (fn: () => unknown): number | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { details?: unknown[] }).details?.[0] as number;
  }
  return undefined;
};

describe('SessionState.accept: event order', () => {
  it('a file event that overtakes its bundle begin is held back and released right after the begin', () => {
    const state = running('backup', [A]);
    state.accept(file(A, 0));
    state.accept({ type: 'process', bundleName: A, process: 'p' });
    expect(stream(state)).toEqual([]);
    state.accept(begin(A));
    expect(stream(state)).toEqual(['bundleBegin com.a', 'fileReady com.a 0', 'process com.a']);
    expect(state.slot(A)).toMatchObject({ files: 1, bytes: 10, nextFileIndex: 1 });
  });

  it('an end that overtakes its begin comes after it too; the begin is emitted once', () => {
    const state = running('backup', [A]);
    state.accept(end(A));
    expect(state.slot(A)!.state).toBe('running');
    state.accept(begin(A));
    state.accept(begin(A));
    expect(stream(state)).toEqual(['bundleBegin com.a', 'bundleEnd com.a']);
    expect(state.slot(A)!.state).toBe('done');
  });

  it('a repeated file index (the hand-over retried) is dropped, and so are earlier ones', () => {
    const state = running('backup', [A]);
    state.accept(begin(A));
    for (const i of [0, 1, 1, 0, 2]) state.accept(file(A, i));
    expect(stream(state)).toEqual(['bundleBegin com.a', 'fileReady com.a 0', 'fileReady com.a 1', 'fileReady com.a 2']);
    expect(state.slot(A)).toMatchObject({ files: 3, bytes: 30 });
  });

  it('nothing of a bundle after its end; events of a bundle not in the session are dropped', () => {
    const state = running('backup', [A]);
    state.accept(begin(A));
    state.accept(end(A));
    state.accept(file(A, 0));
    state.accept(result(A));
    state.accept(end(A, { error: { code: 13500003, message: 'late' } }));
    state.accept(begin('com.unknown'));
    expect(stream(state)).toEqual(['bundleBegin com.a', 'bundleEnd com.a']);
    expect(state.outcomes()).toEqual([{ bundleName: A, state: 'done', error: undefined, files: 0, bytes: 0 }]);
  });

  it('a begin with an error is emitted, lets the bundle end with it, and its early events are not held for a begin that never comes', () => {
    const state = running('backup', [A]);
    const error = { code: 13500013, message: 'held elsewhere' };
    state.accept(begin(A, error));
    state.accept(end(A, { error }));
    expect(stream(state)).toEqual(['bundleBegin com.a', 'bundleEnd com.a']);
    expect(state.outcomes()[0]).toMatchObject({ state: 'failed', error });
  });

  it('a cancelled end gives the state cancelled; an end with an error, failed', () => {
    const state = running('backup', [A, B]);
    state.accept(begin(A));
    state.accept(begin(B));
    state.accept(end(A, { cancelled: true, error: { code: 13500011, message: 'cancelled' } }));
    state.accept(end(B, { error: { code: 13500004, message: 'died' } }));
    expect(state.outcomes().map((o) => o.state)).toEqual(['cancelled', 'failed']);
  });
});

describe('SessionState: restore targets', () => {
  const asked = (state: SessionState, uri: string, target: { ok: true; path: string } | { ok: false; error: { code: number; message: string } }) => {
    const slot = state.requestTarget({ bundleName: A, uri });
    state.targetMade(slot, uri, target);
  };

  it('targets made before the bundle began follow its begin, numbered in order, before what overtook the begin', () => {
    const state = running('restore', [A]);
    asked(state, 'x', { ok: true, path: '/t/x' });
    asked(state, 'y', { ok: false, error: { code: 13900001, message: 'no' } });
    state.accept({ type: 'process', bundleName: A, process: 'waiting' });
    expect(stream(state)).toEqual([]);
    state.accept(begin(A));
    expect(stream(state)).toEqual(['bundleBegin com.a', 'fileReady com.a 0', 'fileReady com.a 1', 'process com.a']);
    const [, x, y] = state.log.page(0).events;
    expect(x).toMatchObject({ uri: 'x', path: '/t/x', writable: true });
    expect(y).toMatchObject({ uri: 'y', path: '', error: { code: 13900001 } });
    // After the begin a target is emitted at once, with the next index.
    asked(state, 'z', { ok: true, path: '/t/z' });
    expect(stream(state).at(-1)).toBe('fileReady com.a 2');
  });

  it('checks: restore sessions only, plain uris, each uri once, not after the bundle ended or the session was released', () => {
    expect(codeOf(() => running('backup', [A]).checkTargetRequest({ bundleName: A, uri: 'x' }))).toBe(ErrorCode.NOT_PERMITTED);
    const state = running('restore', [A]);
    expect(codeOf(() => state.checkTargetRequest({ bundleName: A, uri: 'x' }))).toBeUndefined();
    for (const uri of ['../x', 'a/b', '.', '..', ''])
      expect(
        codeOf(() => state.checkTargetRequest({ bundleName: A, uri })),
        uri,
      ).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(codeOf(() => state.checkTargetRequest({ bundleName: 'com.unknown', uri: 'x' }))).toBe(ErrorCode.INVALID_ARGUMENT);
    state.requestTarget({ bundleName: A, uri: 'x' });
    expect(codeOf(() => state.checkTargetRequest({ bundleName: A, uri: 'x' }))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(codeOf(() => state.checkPublish({ bundleName: A, uri: '' }))).toBeUndefined();
    expect(codeOf(() => state.checkPublish({ bundleName: A, uri: 'a/b' }))).toBe(ErrorCode.INVALID_ARGUMENT);
    state.accept(begin(A));
    state.accept(end(A));
    expect(codeOf(() => state.checkTargetRequest({ bundleName: A, uri: 'y' }))).toBe(ErrorCode.NOT_PERMITTED);
    const released = running('restore', [B]);
    released.release();
    expect(codeOf(() => released.checkPublish({ bundleName: B, uri: '' }))).toBe(ErrorCode.NOT_PERMITTED);
  });

  it('publishing the whole bundle (uri "") tells a started child once; a single file or a child not yet started, never', () => {
    const state = session('restore', [{ bundleName: A }]);
    expect(state.publish({ bundleName: A, uri: 'f0' })).toBe(false);
    expect(state.publish({ bundleName: A, uri: '' })).toBe(false); // no child yet: it starts published
    expect(state.slot(A)!.published).toBe(true);
    const started = running('restore', [B]);
    expect(started.publish({ bundleName: B, uri: '' })).toBe(true);
    expect(started.publish({ bundleName: B, uri: '' })).toBe(false);
  });
});

describe('SessionState: delivery errors', () => {
  const stop = { code: 13500014, message: 'too many open fds' };

  it('a running bundle whose delivery stopped: its child is cancelled, later files dropped, and its end carries the delivery error', () => {
    const state = running('backup', [A]);
    state.accept(begin(A));
    state.accept(file(A, 0));
    expect(state.deliveryStopped({ bundleName: A, error: stop, files: 0, bytes: 0 })).toBe(true);
    expect(state.deliveryStopped({ bundleName: A, error: stop, files: 0, bytes: 0 })).toBe(false); // once
    state.accept(file(A, 1));
    state.accept(end(A, { cancelled: true, error: { code: 13500011, message: 'cancelled' } }));
    expect(stream(state)).toEqual(['bundleBegin com.a', 'fileReady com.a 0', 'bundleEnd com.a']);
    expect(state.log.page(0).events.at(-1)).toMatchObject({ error: stop, cancelled: false });
    expect(state.outcomes()[0]).toMatchObject({ state: 'failed', error: stop, files: 0, bytes: 0 });
  });

  it("a bundle's own failure stays its outcome; one that ended done turns failed", () => {
    const own = { code: 13500004, message: 'died' };
    const failing = running('backup', [A]);
    failing.accept(begin(A));
    failing.deliveryStopped({ bundleName: A, error: stop, files: 0, bytes: 0 });
    failing.accept(end(A, { error: own }));
    expect(failing.outcomes()[0]).toMatchObject({ state: 'failed', error: own });
    const done = running('backup', [B]);
    done.accept(begin(B));
    done.accept(end(B));
    expect(done.deliveryStopped({ bundleName: B, error: stop, files: 2, bytes: 5 })).toBe(false);
    expect(done.outcomes()[0]).toEqual({ bundleName: B, state: 'failed', error: stop, files: 2, bytes: 5 });
  });
});

describe('SessionState: scheduling', () => {
  it('starts by priority, then append order, at most maxConcurrent; a restore waits for its dependencies', () => {
    const state = session('restore', [
      { bundleName: 'low', priority: 0 },
      { bundleName: 'high', priority: 5 },
      { bundleName: 'dependent', priority: 9, restoreDeps: ['low', 'dependent', 'com.not.in.session'] },
      { bundleName: 'low2', priority: 0 },
    ]);
    expect(state.takeStartable(2).map((b) => b.bundleName)).toEqual(['high', 'low']);
    expect(state.canStart(2)).toBe(false);
    expect(state.takeStartable(3).map((b) => b.bundleName)).toEqual(['low2']); // dependent waits for low
    state.accept(begin('low'));
    state.accept(end('low'));
    expect(state.nextPending()?.bundleName).toBe('dependent');
  });

  it('onAllBundlesEnd once every bundle appended so far ended, and again after an incremental append adds more', () => {
    const state = running('incremental', [A]);
    expect(state.allEndDue()).toBe(false);
    state.accept(begin(A));
    state.accept(end(A));
    expect(state.allEndDue()).toBe(true);
    state.announceAllEnded();
    state.announceAllEnded();
    expect(stream(state).filter((e) => e === 'allBundlesEnd')).toHaveLength(1);
    state.checkAppend(); // an incremental session may append again
    state.countAppend();
    state.add([{ bundleName: A }, { bundleName: B }], new Map());
    expect(state.slots.map((b) => b.bundleName)).toEqual([A, B]); // appended once is enough
    expect(state.allEndDue()).toBe(false);
    state.endRejected(state.takeStartable(1)[0]!, { code: 13500013, message: 'held' });
    state.announceAllEnded();
    expect(stream(state).filter((e) => e === 'allBundlesEnd')).toHaveLength(2);
  });

  it('a bundle another session holds is appended rejected with 13500013; a backup session appends once; release marks what never ran', () => {
    const conflict = { code: 13500013, message: 'in session other' };
    const state = session('backup', [{ bundleName: A }, { bundleName: B, targetBundle: 'com.device.b' }], new Map([['com.device.b', conflict]]));
    expect(state.slot(B)!.request.rejected).toEqual(conflict);
    expect(state.slot(A)!.request.rejected).toBeUndefined();
    expect(state.toClaim([{ bundleName: A }, { bundleName: 'com.new', targetBundle: 'com.dev' }, { bundleName: 'com.r', rejected: conflict }])).toEqual([
      'com.dev',
    ]);
    expect(codeOf(() => state.checkAppend())).toBe(ErrorCode.NOT_PERMITTED);
    state.release();
    expect(codeOf(() => state.checkAppend())).toBe(ErrorCode.NOT_PERMITTED);
    expect(codeOf(() => state.checkRelease())).toBe(ErrorCode.NOT_PERMITTED);
    state.markNotStarted();
    expect(state.outcomes().map((o) => o.state)).toEqual(['notStarted', 'notStarted']);
  });

  it('cancelBundle: refused for a pending bundle and one not in the session or ended; allowed while running', () => {
    const state = session('backup', [{ bundleName: A }, { bundleName: B }]);
    state.takeStartable(1);
    expect(state.cancelRefusal(A)).toBeUndefined();
    expect(state.cancelRefusal(B)).toBe(ErrorCode.CANCEL_NOT_STARTED);
    expect(state.cancelRefusal('com.unknown')).toBe(ErrorCode.CANCEL_NO_TASK);
    state.accept(begin(A));
    state.accept(end(A));
    expect(state.cancelRefusal(A)).toBe(ErrorCode.CANCEL_NO_TASK);
  });
});

describe('SessionState: continue-as-new', () => {
  it('carries slots, counters and the log as plain data, and the next run goes on from there', () => {
    const state = running('restore', [A]);
    const slot = state.requestTarget({ bundleName: A, uri: 'x' });
    state.targetMade(slot, 'x', { ok: true, path: '/t/x' });
    state.accept({ type: 'process', bundleName: A, process: 'early' });
    const carried = structuredClone(state.toCarried());
    expect(Object.keys(carried).sort()).toEqual(['acked', 'allEndSentFor', 'appendCalls', 'events', 'lastSeq', 'nextOrder', 'released', 'slots']);
    const next = new SessionState('restore', carried);
    next.accept(begin(A));
    expect(stream(next)).toEqual(['bundleBegin com.a', 'fileReady com.a 0', 'process com.a']);
    expect(next.log.page(0).events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(next.toCarried().appendCalls).toBe(1);
  });

  it('the next run schedules from the carried slots: what runs counts, the queue goes on in order, the details say the same', () => {
    const state = session('backup', [{ bundleName: A }, { bundleName: B, priority: 1 }, { bundleName: C }]);
    expect(state.takeStartable(1).map((s) => s.bundleName)).toEqual([B]);
    state.accept(begin(B));
    const next = new SessionState('backup', structuredClone(state.toCarried()));
    expect(next.canStart(1)).toBe(false);
    expect(next.details()).toBe(['- `com.a`: pending, 0 files, 0 B', '- `com.b`: running, 0 files, 0 B', '- `com.c`: pending, 0 files, 0 B'].join('\n'));
    next.accept(end(B));
    expect(next.takeStartable(2).map((s) => s.bundleName)).toEqual([A, C]);
    expect(next.allEnded()).toBe(false);
    next.accept(begin(A));
    next.accept(file(A, 0, 2048));
    next.accept(end(A));
    next.accept(begin(C));
    next.accept(end(C, { error: { code: ErrorCode.TASK_FAILED, message: 'no' } }));
    expect(next.allEnded()).toBe(true);
    expect(next.details().split('\n')).toEqual([
      '- `com.a`: done, 1 files, 2.00 KiB',
      '- `com.b`: done, 0 files, 0 B',
      `- \`com.c\`: failed, 0 files, 0 B (error ${ErrorCode.TASK_FAILED})`,
    ]);
  });
});

/** A backup session with `names` appended, the first `run` of them running and begun. */
function begun(names: string[], run: number) {
  const state = session(
    'backup',
    names.map((bundleName) => ({ bundleName })),
  );
  for (const slot of state.takeStartable(run)) {
    slot.childStarted = true;
    state.accept(begin(slot.bundleName));
  }
  return state;
}
const C = 'com.c';
const seqOf = (state: SessionState) => state.log.page(0).lastSeq;

describe('SessionState: the tool lease', () => {
  it('counts per bundle what the tool acknowledged (files, bytes, the uris up to a cap, its end), each once', () => {
    const state = begun([A], 1);
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

    const many = begun([B], 1);
    for (let i = 0; i < ACKNOWLEDGED_URIS_NAMED + 5; i++) many.accept(file(B, i));
    many.ack(seqOf(many));
    expect(many.slot(B)!.acknowledged?.files).toBe(ACKNOWLEDGED_URIS_NAMED + 5);
    expect(many.slot(B)!.acknowledged?.uris).toHaveLength(ACKNOWLEDGED_URIS_NAMED);
  });

  it('abandoned: running bundles end with 13500010 and take no more files, queued ones begin and end with 13500011, a done one whose end the tool never saw failed; the account names what the tool had', () => {
    // A done and acknowledged; B running (one file acknowledged, one not); C queued.
    const state = begun([A, B, C], 2);
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
    const unseen = begun([A], 1);
    unseen.accept(file(A, 0));
    unseen.accept({ type: 'bundleEnd', bundleName: A });
    unseen.abandon('tool silent for 3 s', 'now');
    expect(unseen.settleAbandoned()!.acknowledgedFiles[0]).toMatchObject({ files: 0, ended: false });
    expect(unseen.slot(A)).toMatchObject({ state: 'failed', files: 0, error: { code: ErrorCode.TASK_FAILED } });
  });

  it('released: a queued bundle begins and ends with 13500011, one refused at append with its own reason; who released it is kept once', () => {
    const state = begun([A, B], 1);
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

describe('what the session tells operators', () => {
  it('onEnded runs once per bundle, refused and never-started ones too; a child closed after its end changes nothing', () => {
    const state = session('backup', [{ bundleName: A }, { bundleName: B }, { bundleName: 'com.c' }]);
    const ended: string[] = [];
    state.onEnded = (slot) => ended.push(`${slot.bundleName} ${slot.state}`);
    const [a, b] = state.takeStartable(2);
    state.accept(begin(A));
    state.accept(end(A, { error: { code: ErrorCode.EXTENSION_DIED, message: 'hook died' } }));
    state.accept(end(A)); // a repeat
    state.childClosed(A, { code: ErrorCode.EXTENSION_DIED, message: 'its workflow failed' }); // the failed child's own close
    state.endRejected(b!, { code: ErrorCode.SESSION_CONFLICT, message: 'held' });
    state.release();
    state.markNotStarted();
    expect(ended).toEqual([`${A} failed`, `${B} failed`, 'com.c notStarted']);
    expect(a!.error?.message).toBe('hook died');
    expect(a!.endedAt! >= a!.startedAt!).toBe(true);
  });

  it('a child closed without reporting (terminated) ends its bundle: begun or not, with one begin and one end', () => {
    const state = running('backup', [A, B]);
    state.accept(begin(A));
    state.childClosed(A, { code: ErrorCode.EXTENSION_DIED, message: 'terminated' });
    state.childClosed(B, { code: ErrorCode.EXTENSION_DIED, message: 'terminated' });
    expect(stream(state)).toEqual([`bundleBegin ${A}`, `bundleEnd ${A}`, `bundleBegin ${B}`, `bundleEnd ${B}`]);
    expect(state.outcomes().map((o) => [o.state, o.error?.code])).toEqual([
      ['failed', ErrorCode.EXTENSION_DIED],
      ['failed', ErrorCode.EXTENSION_DIED],
    ]);
  });

  it('the final table: outcome and totals, who started it, a padded Markdown row per bundle with human sizes', () => {
    const state = running('backup', [A, 'com.longer.name']);
    state.accept(begin(A));
    state.accept(file(A, 0, 1536));
    state.accept(end(A));
    state.accept(begin('com.longer.name'));
    state.accept(end('com.longer.name', { error: { code: 13500004, message: 'a | b'.repeat(30) } }));
    const md = state.summaryMarkdown('partial', { host: 'h1', user: 'u1', target: 'backup set /s' });
    const lines = md.split('\n');
    expect(lines.slice(0, 4)).toEqual(['**partial**: 1 of 2 bundles done, 1 files, 1.50 KiB', '', 'Started by u1@h1; backup set /s', '']);
    expect(lines[4]).toMatch(/^\| Bundle +\| State +\| Files \| +Size \| Duration \| Error \|$/);
    // Every column but the last lines up; pipes in a message are escaped, a long one clipped.
    const widths = lines.slice(4).map((l) =>
      l
        .split(/(?<!\\)\|/)
        .slice(1, -2)
        .map((c) => c.length),
    );
    for (const w of widths) expect(w).toEqual(widths[0]);
    expect(lines[6]).toMatch(/^\| `com\.a` +\| done +\| +1 \| 1\.50 KiB \| +\d+ ms \| {2}\|$/);
    expect(lines[7]).toContain('13500004 a \\| b');
    expect(lines[7]!.length).toBeLessThan(200); // the error clipped at 100 characters
    expect(lines[7]).toMatch(/…$|… \|$/);
  });
});
