/**
 * When the event pump acknowledges (each acknowledgement is a signal, a history event of the session): a burst
 * waits until it is a second old, many waiting events or a session that asks are acknowledged at once, the last
 * ones when the pump stops, none while a release holds them. A fake session answers its queries; fake timers.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { EventPump } from '../../client/sessions/eventPump.js';
import type { EventsPage, SessionEvent } from '../../common/session.js';
import type { GeneralCallbacks } from '../../client/types.js';

function fakeSession() {
  const events: SessionEvent[] = [];
  const acks: number[] = [];
  const state = { ackNow: false };
  const handle = {
    client: { connection: { withDeadline: (_deadline: number, fn: () => Promise<unknown>) => fn() } },
    query: async (_query: unknown, after: number, max = 1000): Promise<EventsPage> => ({
      events: events.filter((e) => e.seq > after).slice(0, max),
      acked: acks.at(-1) ?? 0,
      lastSeq: events.length,
      released: false,
      ...(state.ackNow ? { ackNow: true } : {}),
    }),
    signal: async (_signal: unknown, seq: number) => void acks.push(seq),
  };
  const add = (n: number) => {
    for (let i = 0; i < n; i++) events.push({ type: 'process', bundleName: 'b', process: '{}', seq: events.length + 1 });
  };
  return { handle: handle as unknown as WorkflowHandle, acks, add, state };
}

function pumpOf(handle: WorkflowHandle) {
  const delivered: string[] = [];
  const callbacks = {
    onProcess: (_name: string, process: string) => void delivered.push(process),
  } as unknown as GeneralCallbacks;
  const pump = new EventPump(handle, callbacks, 0, { maxOpenFds: 8, fdWaitMs: 1000 });
  return { pump, delivered };
}

beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

it('a few events are acknowledged once they have waited a second, in one signal', async () => {
  const s = fakeSession();
  const { pump, delivered } = pumpOf(s.handle);
  s.add(3);
  pump.start();
  await vi.advanceTimersByTimeAsync(300);
  expect(delivered).toHaveLength(3);
  s.add(2);
  await vi.advanceTimersByTimeAsync(500);
  expect(delivered).toHaveLength(5);
  expect(s.acks).toEqual([]);
  await vi.advanceTimersByTimeAsync(700);
  expect(s.acks).toEqual([5]);
  await pump.stop();
  expect(s.acks).toEqual([5]);
});

it('many waiting events are acknowledged at once', async () => {
  const s = fakeSession();
  const { pump } = pumpOf(s.handle);
  s.add(300);
  pump.start();
  await vi.advanceTimersByTimeAsync(1);
  expect(s.acks).toEqual([300]);
  await pump.stop();
});

it('a session that asks (a continue-as-new waiting for it) is acknowledged at once', async () => {
  const s = fakeSession();
  const { pump } = pumpOf(s.handle);
  s.add(3);
  pump.start();
  await vi.advanceTimersByTimeAsync(100);
  expect(s.acks).toEqual([]);
  s.state.ackNow = true;
  s.add(1);
  await vi.advanceTimersByTimeAsync(100);
  expect(s.acks).toEqual([4]);
  await pump.stop();
});

it('stopping acknowledges what was delivered, unless a release holds acknowledgements', async () => {
  const s = fakeSession();
  const { pump } = pumpOf(s.handle);
  s.add(3);
  pump.start();
  await vi.advanceTimersByTimeAsync(100);
  await pump.stop();
  expect(s.acks).toEqual([3]);

  const held = fakeSession();
  const other = pumpOf(held.handle);
  held.add(3);
  other.pump.start();
  await vi.advanceTimersByTimeAsync(100);
  other.pump.holdAcks(true);
  await vi.advanceTimersByTimeAsync(2000);
  await other.pump.stop();
  expect(other.delivered).toHaveLength(3);
  expect(held.acks).toEqual([]);
});
