import { describe, expect, it } from 'vitest';
import { markToolBegun, toolBegunRateChanged, waitForToolBegun, type ChildRun, type ToolBegunWait } from '../../activities/toolBegunMarks.js';

let n = 0;
/** A child run of its own. */
const newRun = (): ChildRun => ({ namespace: 'default', workflowId: `session-${++n}/com.example.app`, runId: `run-${n}` });
const never = () => new AbortController().signal;

/** A wait on a child of its own; `answers` are what its asks get, in turn (false once they run out). */
function wait(answers: Array<number | false | Error> = [], over: Partial<ToolBegunWait> = {}) {
  const run = newRun();
  const asks: number[] = [];
  const started = Date.now();
  const promise = waitForToolBegun({
    run,
    waitMs: 2000,
    signal: new AbortController().signal,
    ask: async () => {
      asks.push(Date.now() - started);
      const a = answers.shift() ?? false;
      if (a instanceof Error) throw a;
      return a;
    },
    ...over,
  });
  return { run, asks, promise, started };
}

describe('toolBegunMarks', () => {
  it('a mark made in this process wakes the wait at once, without asking the child', async () => {
    const w = wait();
    setTimeout(() => markToolBegun(w.run, 7), 30);
    expect(await w.promise).toEqual({ by: 'mark', sendRate: 7 });
    expect(w.asks).toEqual([]);
  });

  it('a mark that came before the wait is kept for it, once', async () => {
    const run = newRun();
    markToolBegun(run, 60);
    const asks: number[] = [];
    const opts = { run, waitMs: 300, signal: never() };
    expect(await waitForToolBegun({ ...opts, ask: async () => (asks.push(1), false) })).toEqual({ by: 'mark', sendRate: 60 });
    expect(asks).toEqual([]);
    // Taken: a second wait (a retry of the activity) asks the child itself.
    expect(await waitForToolBegun({ ...opts, ask: async () => (asks.push(1), false) })).toEqual({ by: 'bound' });
    expect(asks.length).toBeGreaterThan(0);
  });

  it('a kept mark carries the rate the bundle has when its wait takes it (a pause set after the mark included)', async () => {
    const run = newRun();
    markToolBegun(run, 60);
    toolBegunRateChanged(run, 0);
    expect(await waitForToolBegun({ run, waitMs: 300, signal: never(), ask: async () => false })).toEqual({ by: 'mark', sendRate: 0 });
    // Once taken, a rate change keeps nothing: the hand-over follows the bundle's rate itself.
    toolBegunRateChanged(run, 9);
    expect(await waitForToolBegun({ run, waitMs: 250, signal: never(), ask: async () => false })).toEqual({ by: 'bound' });
  });

  it('marks are per namespace, child and run: another’s mark does not end this wait', async () => {
    const w = wait([], { waitMs: 300 });
    markToolBegun({ ...w.run, namespace: 'other-namespace' }, 5);
    markToolBegun({ ...w.run, workflowId: `${w.run.workflowId}.other` }, 5);
    markToolBegun({ ...w.run, runId: 'an-earlier-run' }, 5);
    toolBegunRateChanged(w.run, 5);
    expect(await w.promise).toEqual({ by: 'bound' });
  });

  it('a child held by another process is found by asking it', async () => {
    const w = wait([false, 42]);
    expect(await w.promise).toEqual({ by: 'ask', sendRate: 42 });
    expect(w.asks).toHaveLength(2);
  });

  it('a tool that never marks the bundle ends the wait after its bound, with a last ask then', async () => {
    const w = wait([], { waitMs: 500 });
    expect(await w.promise).toEqual({ by: 'bound' });
    expect(Date.now() - w.started).toBeGreaterThanOrEqual(500);
    expect(w.asks.at(-1)!).toBeGreaterThanOrEqual(500);
    // Asked now and then, not every few milliseconds.
    expect(w.asks.length).toBeLessThanOrEqual(4);
  });

  it('a failed ask fails the wait (the activity fails, and its retry waits again)', async () => {
    const w = wait([new Error('query failed')]);
    await expect(w.promise).rejects.toThrow('query failed');
  });

  it('cancellation ends the wait with the signal’s reason', async () => {
    const ac = new AbortController();
    const w = wait([], { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('cancelled')), 20);
    await expect(w.promise).rejects.toThrow('cancelled');
    // The cancelled wait no longer listens: a later mark is kept for the next wait.
    markToolBegun(w.run, 3);
    expect(await waitForToolBegun({ run: w.run, waitMs: 100, signal: never(), ask: async () => false })).toEqual({ by: 'mark', sendRate: 3 });
  });
});
