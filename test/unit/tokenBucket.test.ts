import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket } from '../../engine/tokenBucket.js';

const now = () => Date.now();

/** Starts `n` takes and records, per take, the fake time it resolved at (ms since t0). */
function startTakes(bucket: TokenBucket, n: number, t0: number, signal?: AbortSignal) {
  const times: number[] = [];
  const order: number[] = [];
  const promises = Array.from({ length: n }, (_, i) =>
    bucket.take(signal).then(() => {
      times[i] = Date.now() - t0;
      order.push(i);
    }),
  );
  return { times, order, promises, done: () => order.length };
}

/** Advances fake time to exactly `t` ms after `t0`, flushing promise callbacks. */
async function advanceTo(t0: number, t: number) {
  await vi.advanceTimersByTimeAsync(t0 + t - Date.now());
}

describe('TokenBucket', () => {
  let t0: number;
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2024-01-01T00:00:00Z'));
    t0 = Date.now();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('defaults the burst to ceil(rate/20), at least 1 and at most max(1, rate)', () => {
    expect(new TokenBucket(60, { now }).burst).toBe(3);
    expect(new TokenBucket(800, { now }).burst).toBe(40);
    expect(new TokenBucket(5, { now }).burst).toBe(1);
    expect(new TokenBucket(0, { now }).burst).toBe(1);
    expect(new TokenBucket(10, { now, burst: 1000 }).burst).toBe(10);
    expect(new TokenBucket(0.5, { now, burst: 4 }).burst).toBe(1);
    expect(new TokenBucket(10, { now }).rate).toBe(10);
    expect(() => new TokenBucket(-1, { now })).toThrow(RangeError);
    expect(() => new TokenBucket(Number.NaN, { now })).toThrow(RangeError);
  });

  it('paces N takes at rate r to k/r seconds, never earlier', async () => {
    const b = new TokenBucket(10, { now });
    const run = startTakes(b, 5, t0);
    await advanceTo(t0, 0);
    expect(run.done()).toBe(1);
    await advanceTo(t0, 99);
    expect(run.done()).toBe(1);
    await advanceTo(t0, 100);
    expect(run.done()).toBe(2);
    await advanceTo(t0, 399);
    expect(run.done()).toBe(4);
    await advanceTo(t0, 400);
    expect(run.done()).toBe(5);
    expect(run.times).toEqual([0, 100, 200, 300, 400]);
  });

  it('stays within 1 ms of k/r for a rate that does not divide 1000, with no drift', async () => {
    const r = 3;
    const b = new TokenBucket(r, { now });
    const run = startTakes(b, 31, t0);
    await advanceTo(t0, 10_001);
    expect(run.done()).toBe(31);
    run.times.forEach((t, k) => {
      expect(t).toBeGreaterThanOrEqual((k * 1000) / r);
      expect(t).toBeLessThanOrEqual((k * 1000) / r + 1);
    });
  });

  it('starts with a single token, not a full burst', async () => {
    const b = new TokenBucket(100, { now }); // burst 5
    const run = startTakes(b, 10, t0);
    await advanceTo(t0, 0);
    expect(run.done()).toBe(1);
    await advanceTo(t0, 10);
    expect(run.done()).toBe(2);
  });

  it('never bursts above `burst` after idling', async () => {
    const b = new TokenBucket(100, { now }); // burst 5
    await advanceTo(t0, 10_000); // idle for 10 s: would be 1000 tokens uncapped
    const run = startTakes(b, 20, t0 + 10_000);
    await advanceTo(t0, 10_000);
    expect(run.done()).toBe(5);
    await advanceTo(t0, 10_009);
    expect(run.done()).toBe(5);
    await advanceTo(t0, 10_010);
    expect(run.done()).toBe(6);
    await advanceTo(t0, 10_150);
    expect(run.done()).toBe(20);
    expect(run.times.slice(5)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]);
  });

  it('after idling, the take following a full burst still waits a whole 1/r', async () => {
    const b = new TokenBucket(40, { now }); // burst 2, one token per 25 ms
    await advanceTo(t0, 1_000);
    const run = startTakes(b, 4, t0 + 1_000);
    await advanceTo(t0, 1_000);
    expect(run.done()).toBe(2);
    await advanceTo(t0, 1_024);
    expect(run.done()).toBe(2);
    await advanceTo(t0, 1_050);
    expect(run.times).toEqual([0, 0, 25, 50]);
  });

  it('honours an explicit burst', async () => {
    const b = new TokenBucket(10, { now, burst: 3 });
    await advanceTo(t0, 5_000);
    const run = startTakes(b, 4, t0);
    await advanceTo(t0, 5_000);
    expect(run.done()).toBe(3);
    await advanceTo(t0, 5_100);
    expect(run.done()).toBe(4);
  });

  it('setRate mid-wait speeds up a pending take', async () => {
    const b = new TokenBucket(1, { now });
    const run = startTakes(b, 2, t0);
    await advanceTo(t0, 500); // half a token banked at 1/s
    expect(run.done()).toBe(1);
    b.setRate(10); // remaining half token at 10/s = 50 ms
    await advanceTo(t0, 549);
    expect(run.done()).toBe(1);
    await advanceTo(t0, 550);
    expect(run.done()).toBe(2);
    expect(run.times).toEqual([0, 550]);
  });

  it('setRate mid-wait slows down a pending take', async () => {
    const b = new TokenBucket(10, { now });
    const run = startTakes(b, 2, t0);
    await advanceTo(t0, 50); // half a token banked at 10/s
    b.setRate(1); // remaining half token at 1/s = 500 ms
    await advanceTo(t0, 100); // when it would have been due at the old rate
    expect(run.done()).toBe(1);
    await advanceTo(t0, 549);
    expect(run.done()).toBe(1);
    await advanceTo(t0, 550);
    expect(run.done()).toBe(2);
  });

  it('caps banked tokens at the new burst when the rate drops', async () => {
    const b = new TokenBucket(100, { now }); // burst 5
    await advanceTo(t0, 1_000);
    b.setRate(10); // burst 1
    const run = startTakes(b, 3, t0 + 1_000);
    await advanceTo(t0, 1_000);
    expect(run.done()).toBe(1);
    await advanceTo(t0, 1_100);
    expect(run.done()).toBe(2);
  });

  it('rate 0 pauses until a positive rate is set, and earns nothing while paused', async () => {
    const b = new TokenBucket(10, { now });
    const run = startTakes(b, 1, t0);
    await advanceTo(t0, 0);
    expect(run.done()).toBe(1);
    b.setRate(0);
    const paused = startTakes(b, 2, t0);
    await advanceTo(t0, 60_000);
    expect(paused.done()).toBe(0);
    expect(vi.getTimerCount()).toBe(0); // no polling while paused
    b.setRate(10);
    await advanceTo(t0, 60_099);
    expect(paused.done()).toBe(0);
    await advanceTo(t0, 60_100);
    expect(paused.done()).toBe(1);
    await advanceTo(t0, 60_200);
    expect(paused.done()).toBe(2);
  });

  it('a bucket created paused holds even its first token until resumed', async () => {
    const b = new TokenBucket(0, { now });
    const run = startTakes(b, 2, t0);
    await advanceTo(t0, 5_000);
    expect(run.done()).toBe(0);
    b.setRate(4);
    await advanceTo(t0, 5_000);
    expect(run.done()).toBe(1);
    await advanceTo(t0, 5_250);
    expect(run.done()).toBe(2);
  });

  it('abort rejects with the reason, frees the queue slot and clears timers', async () => {
    const b = new TokenBucket(1, { now });
    const ac = new AbortController();
    const first = startTakes(b, 1, t0);
    const aborted = b.take(ac.signal);
    const abortedOutcome = aborted.then(
      () => 'resolved',
      (e: unknown) => e,
    );
    const last = startTakes(b, 1, t0);
    await advanceTo(t0, 200);
    const reason = new Error('cancelled');
    ac.abort(reason);
    expect(await abortedOutcome).toBe(reason);
    expect(first.done()).toBe(1);
    // The aborted waiter's token goes to the next in line, at the original time.
    await advanceTo(t0, 999);
    expect(last.done()).toBe(0);
    await advanceTo(t0, 1_000);
    expect(last.times).toEqual([1_000]);

    // Aborting the only waiter leaves no timer behind.
    const ac2 = new AbortController();
    const lone = b.take(ac2.signal).catch((e: unknown) => e);
    expect(vi.getTimerCount()).toBe(1);
    ac2.abort('stop');
    expect(await lone).toBe('stop');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('an already-aborted signal rejects at once and consumes no token', async () => {
    const b = new TokenBucket(1, { now });
    await expect(b.take(AbortSignal.abort('gone'))).rejects.toBe('gone');
    const run = startTakes(b, 1, t0);
    await advanceTo(t0, 0);
    expect(run.done()).toBe(1);
  });

  it('serves takes in call order, even when a newcomer arrives with a token in the bucket', async () => {
    const b = new TokenBucket(0, { now }); // paused with one token banked
    const order: string[] = [];
    const a = b.take().then(() => order.push('a'));
    const c = b.take().then(() => order.push('b'));
    const d = b.take().then(() => order.push('c'));
    b.setRate(100);
    await advanceTo(t0, 20);
    await Promise.all([a, c, d]);
    expect(order).toEqual(['a', 'b', 'c']);

    const run = startTakes(b, 6, t0);
    await advanceTo(t0, 100);
    expect(run.order).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
