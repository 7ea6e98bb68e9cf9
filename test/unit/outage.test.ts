/**
 * The tool's outage rule (`client/sessions/outage.ts`): queries that error for 2 s are an outage, queries that
 * only miss their deadline are one after 15 s with no answer; an answer ends it, and each outage is told once.
 * Then the event pump against a fake session whose queries fail as scripted, on fake timers.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { ServiceError } from '@temporalio/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EventPump } from '../../client/sessions/eventPump.js';
import { ERRORS_AFTER_MS, OutageWatch, SILENT_AFTER_MS, failureOf } from '../../client/sessions/outage.js';
import type { EventsPage } from '../../common/session.js';
import type { GeneralCallbacks } from '../../client/types.js';

/** What the SDK throws for a query that failed with this gRPC status. */
const grpcFailure = (code: number) => new ServiceError('Failed to query Workflow', { cause: Object.assign(new Error(`${code}`), { code }) });
const DEADLINE_EXCEEDED = 4;
const UNAVAILABLE = 14;
const FAILED_PRECONDITION = 9;

describe('failureOf', () => {
  it('tells an unanswered query from a refused one by its gRPC status', () => {
    expect(failureOf(grpcFailure(DEADLINE_EXCEEDED))).toBe('noAnswer');
    expect(failureOf(grpcFailure(8))).toBe('noAnswer');
    expect(failureOf(grpcFailure(1))).toBe('noAnswer');
    expect(failureOf(grpcFailure(UNAVAILABLE))).toBe('error');
    expect(failureOf(grpcFailure(FAILED_PRECONDITION))).toBe('error');
    expect(failureOf(new Error('no code'))).toBe('error');
    expect(failureOf(undefined)).toBe('error');
  });
});

describe('OutageWatch', () => {
  it('a query past its deadline, then one answered: no outage (a slow service)', () => {
    const w = new OutageWatch();
    expect(w.failed('noAnswer', 0, 5_000)).toBe(false);
    expect(w.failed('noAnswer', 5_500, 10_500)).toBe(false);
    w.answered();
    expect(w.failed('noAnswer', 11_000, 16_000)).toBe(false);
  });

  it('no answer for 15 s is an outage, told once', () => {
    const w = new OutageWatch();
    expect(w.failed('noAnswer', 0, 5_000)).toBe(false);
    expect(w.failed('noAnswer', 5_500, 10_500)).toBe(false);
    expect(w.failed('noAnswer', 11_000, SILENT_AFTER_MS + 1_000)).toBe(true);
    expect(w.failed('noAnswer', 16_500, 21_500)).toBe(false);
    expect(w.failed('error', 22_000, 22_010)).toBe(false);
  });

  it('errors for 2 s are an outage (the server unreachable), shorter ones not', () => {
    const w = new OutageWatch();
    expect(w.failed('error', 0, 10)).toBe(false);
    expect(w.failed('error', 510, 520)).toBe(false);
    w.answered();
    expect(w.failed('error', 1_000, 1_010)).toBe(false);
    expect(w.failed('error', 2_500, 2_510)).toBe(false);
    expect(w.failed('error', 3_000, 1_010 + ERRORS_AFTER_MS)).toBe(true);
  });

  it("errors count from the first error's arrival, not from the first unanswered query nor its asking", () => {
    const w = new OutageWatch();
    expect(w.failed('noAnswer', 0, 5_000)).toBe(false);
    expect(w.failed('error', 5_500, 9_000)).toBe(false);
    expect(w.failed('error', 9_500, 10_000)).toBe(false);
    expect(w.failed('error', 10_500, 11_000)).toBe(true);
  });

  it('an answer after an outage ends it: the next one is told again', () => {
    const w = new OutageWatch();
    w.failed('error', 0, 10);
    expect(w.failed('error', 2_000, 2_010)).toBe(true);
    w.answered();
    w.failed('error', 3_000, 3_010);
    expect(w.failed('error', 5_000, 5_010)).toBe(true);
  });
});

describe('the event pump', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  /** A session whose queries fail, each after `ms`, with the scripted statuses; answered (empty) after those. */
  function flakySession(script: { code: number; ms: number }[]) {
    let asked = 0;
    const handle = {
      client: { connection: { withDeadline: (_deadline: number, fn: () => Promise<unknown>) => fn() } },
      query: async (): Promise<EventsPage> => {
        const step = script[asked++];
        if (step) {
          await new Promise((resolve) => setTimeout(resolve, step.ms));
          throw grpcFailure(step.code);
        }
        return { events: [], acked: 0, lastSeq: 0, released: false };
      },
      signal: async () => undefined,
    };
    return { handle: handle as unknown as WorkflowHandle, asked: () => asked };
  }

  function pumpOf(handle: WorkflowHandle) {
    let died = 0;
    const callbacks = { onBackupServiceDied: () => void died++ } as unknown as GeneralCallbacks;
    return { pump: new EventPump(handle, callbacks, 0, { maxOpenFds: 8, fdWaitMs: 1000 }), died: () => died };
  }

  it('one query past its 5 s deadline (a worker replaying a long history) is not the service dying', async () => {
    const s = flakySession([{ code: DEADLINE_EXCEEDED, ms: 5_000 }]);
    const { pump, died } = pumpOf(s.handle);
    pump.start();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(s.asked()).toBeGreaterThan(2);
    expect(died()).toBe(0);
    await pump.stop();
  });

  /** Told nothing `quietMs` into the failures, told once by `toldByMs`. */
  async function toldOnce(code: number, ms: number, quietMs: number, toldByMs: number) {
    const s = flakySession(Array.from({ length: Math.ceil(toldByMs / ms) + 2 }, () => ({ code, ms })));
    const { pump, died } = pumpOf(s.handle);
    pump.start();
    await vi.advanceTimersByTimeAsync(quietMs);
    expect(died()).toBe(0);
    await vi.advanceTimersByTimeAsync(toldByMs - quietMs);
    expect(died()).toBe(1);
    // A query still failing holds the loop: let it end.
    const stopped = pump.stop();
    await vi.advanceTimersByTimeAsync(ms + 1_000);
    await stopped;
  }

  it('queries unanswered for 15 s are the service dying: told once', () => toldOnce(DEADLINE_EXCEEDED, 5_000, 14_000, 40_000));

  it('queries refused for 2 s (the server unreachable) are: told once', () => toldOnce(UNAVAILABLE, 1, 1_000, 20_000));
});
