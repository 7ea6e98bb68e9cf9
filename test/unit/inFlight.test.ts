import { describe, expect, it } from 'vitest';
import { InFlightLimit } from '../../client/sessions/inFlight.js';

/** A call that runs until `release()`. */
function gate() {
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  return { done, release };
}

describe('InFlightLimit', () => {
  it('runs at most `limit` calls at once, the rest in call order, and a failed call frees its place', async () => {
    const limit = new InFlightLimit(2);
    const started: number[] = [];
    const gates = [0, 1, 2, 3].map(() => gate());
    const calls = gates.map((g, i) =>
      limit.run(async () => {
        started.push(i);
        await g.done;
        if (i === 0) throw new Error('first fails');
        return i;
      }),
    );
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    await settle();
    expect(started).toEqual([0, 1]);
    gates[0]!.release();
    await expect(calls[0]).rejects.toThrow('first fails');
    await settle();
    expect(started).toEqual([0, 1, 2]);
    gates[2]!.release();
    await expect(calls[2]).resolves.toBe(2);
    await settle();
    expect(started).toEqual([0, 1, 2, 3]);
    gates[1]!.release();
    gates[3]!.release();
    expect(await Promise.all([calls[1], calls[3]])).toEqual([1, 3]);
    // All places free again: the next calls start at once.
    const more = [gate(), gate()];
    const next = more.map((g, i) => limit.run(() => g.done.then(() => i)));
    await settle();
    more.forEach((g) => g.release());
    expect(await Promise.all(next)).toEqual([0, 1]);
  });
});
