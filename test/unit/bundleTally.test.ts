// BundleTally (client/runs/tally.ts): what a run reports for each bundle, without a server.
import { describe, expect, it } from 'vitest';
import { BundleTally } from '../../client/runs/tally.js';

const E1 = { code: 13900011, message: 'first' };
const E2 = { code: 13500003, message: 'second' };

describe('BundleTally', () => {
  it('a bundle that ends without an error is done; one that failed on the way stays failed with its first error', () => {
    const t = new BundleTally(['a', 'b']);
    t.begin('a');
    t.begin('b');
    expect(t.fail('b', E1)).toBe(true);
    expect(t.fail('b', E2)).toBe(false);
    expect(t.end('a')).toMatchObject({ state: 'done' });
    expect(t.end('b')).toMatchObject({ state: 'failed', error: E1 });
  });

  it("an end's error replaces the earlier one only when asked (a backup's end says why)", () => {
    const t = new BundleTally(['a', 'b']);
    for (const n of ['a', 'b']) t.fail(n, E1);
    expect(t.end('a', E2).error).toEqual(E1);
    expect(t.end('b', E2, true).error).toEqual(E2);
  });

  it('closes out: never begun → notStarted, still running → failed; the outcome follows the rule', () => {
    const t = new BundleTally(['done', 'running', 'pending']);
    t.begin('done');
    t.end('done');
    t.begin('running');
    const summary = t.closeOut({ interrupted: false });
    expect(summary.bundles.map((b) => [b.bundleName, b.state])).toEqual([
      ['done', 'done'],
      ['running', 'failed'],
      ['pending', 'notStarted'],
    ]);
    expect(summary.bundles[1]!.error?.message).toBe('The session ended before the bundle did');
    expect(summary.outcome).toBe('partial');
    expect(new BundleTally(['x']).closeOut({ interrupted: true }).outcome).toBe('interrupted');
  });

  it('after the close-out, late events change nothing', () => {
    const t = new BundleTally(['a']);
    t.begin('a');
    const summary = t.closeOut({ interrupted: true });
    t.end('a');
    t.outcome('a').files = 99;
    t.takeReleased([{ bundleName: 'a', state: 'done', files: 5, bytes: 5 }]);
    expect(t.closeOut({ interrupted: true }).bundles).toEqual(summary.bundles);
  });

  it("takes a release's result: its state, the larger counts, our error when it has none", () => {
    const t = new BundleTally(['a']);
    t.begin('a');
    t.outcome('a').files = 3;
    t.fail('a', E1);
    t.takeReleased([{ bundleName: 'a', state: 'failed', files: 2, bytes: 10 }]);
    expect(t.closeOut({ interrupted: false }).bundles[0]).toEqual({ bundleName: 'a', state: 'failed', files: 3, bytes: 10, error: E1 });
  });
});
