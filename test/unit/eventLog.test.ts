/** The session's event log without a server: numbering, ack trimming, paging, and what continue-as-new carries. */
import { describe, expect, it } from 'vitest';
import { EventLog } from '../../workflows/session/eventLog.js';
import type { EventBody } from '../../common/session.js';

const progress = (n: number): EventBody => ({ type: 'process', bundleName: 'com.a', process: `step ${n}` });

function logOf(n: number): EventLog {
  const log = new EventLog();
  for (let i = 1; i <= n; i++) log.append(progress(i));
  return log;
}

describe('EventLog', () => {
  it('numbers events 1, 2, 3… in the order they are appended', () => {
    const log = new EventLog();
    expect(log.append(progress(1)).seq).toBe(1);
    expect(log.append({ type: 'allBundlesEnd' }).seq).toBe(2);
    const page = log.page(0);
    expect(page.events.map((e) => [e.seq, e.type])).toEqual([
      [1, 'process'],
      [2, 'allBundlesEnd'],
    ]);
    expect(page.lastSeq).toBe(2);
    expect(page.acked).toBe(0);
  });

  it('an ack drops what was delivered; an older or repeated ack changes nothing; an ack past the end stops at the last event', () => {
    const log = logOf(5);
    log.ack(3);
    expect(log.page(0).events.map((e) => e.seq)).toEqual([4, 5]);
    expect(log.page(0).acked).toBe(3);
    log.ack(2);
    log.ack(3);
    expect(log.page(0)).toMatchObject({ acked: 3, lastSeq: 5 });
    expect(log.unacked().map((e) => e.seq)).toEqual([4, 5]);
    log.ack(99);
    expect(log.page(0)).toEqual({ events: [], acked: 5, lastSeq: 5 });
    // Numbering goes on after everything was acknowledged.
    expect(log.append(progress(6)).seq).toBe(6);
    expect(log.unacked().map((e) => e.seq)).toEqual([6]);
  });

  it('pages: events after a position, at most `max` of them (1000 by default)', () => {
    const log = logOf(1205);
    expect(log.page(2, 2).events.map((e) => e.seq)).toEqual([3, 4]);
    expect(log.page(1205).events).toEqual([]);
    expect(log.page(0).events).toHaveLength(1000);
    expect(log.page(1000).events.map((e) => e.seq)).toEqual(Array.from({ length: 205 }, (_, i) => 1001 + i));
  });

  it('carries its state over continue-as-new and goes on numbering from there', () => {
    const log = logOf(4);
    log.ack(2);
    const carried = structuredClone(log.toCarried());
    expect(carried).toMatchObject({ lastSeq: 4, acked: 2 });
    const next = new EventLog(carried);
    expect(next.append(progress(5)).seq).toBe(5);
    expect(next.page(0).events.map((e) => e.seq)).toEqual([3, 4, 5]);
  });
});
