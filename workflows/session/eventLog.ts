/**
 * The session's numbered event stream: every event gets the next sequence
 * number, the tool acknowledges what it has delivered (those are dropped, so
 * the state carried over continue-as-new stays small), and reads the rest in
 * pages. Pure: no Temporal calls.
 */
import type { EventBody, EventsPage, SessionEvent } from '../../common/session.js';

/** What continue-as-new carries of the log (field names as in CarriedState). */
export interface EventLogState {
  events: SessionEvent[];
  lastSeq: number;
  acked: number;
}

export class EventLog {
  private events: SessionEvent[];
  private lastSeq: number;
  private acked: number;

  constructor(carried?: EventLogState) {
    this.events = carried?.events ?? [];
    this.lastSeq = carried?.lastSeq ?? 0;
    this.acked = carried?.acked ?? 0;
  }

  /** Numbers `body` as the next event. */
  append(body: EventBody): SessionEvent {
    this.lastSeq += 1;
    const event = { ...body, seq: this.lastSeq } as SessionEvent;
    this.events.push(event);
    return event;
  }

  /** The tool has delivered every event up to `seq`: drop them, and answer them (an old or repeated ack changes nothing). */
  ack(seq: number): SessionEvent[] {
    if (seq <= this.acked) return [];
    this.acked = Math.min(seq, this.lastSeq);
    const keepFrom = this.events.findIndex((e) => e.seq > this.acked);
    const dropped = keepFrom < 0 ? this.events : this.events.slice(0, keepFrom);
    this.events = keepFrom < 0 ? [] : this.events.slice(keepFrom);
    return dropped;
  }

  /** Up to `max` events after `after`, with where the log stands. */
  page(after: number, max = 1000): Omit<EventsPage, 'released'> {
    return { events: this.events.filter((e) => e.seq > after).slice(0, max), acked: this.acked, lastSeq: this.lastSeq };
  }

  /** Events the tool has not acknowledged (a releasing tool drains them from the session's result). */
  unacked(): SessionEvent[] {
    return this.events.filter((e) => e.seq > this.acked);
  }

  /** The tool has acknowledged every event. */
  allAcked(): boolean {
    return this.acked >= this.lastSeq;
  }

  toCarried(): EventLogState {
    return { events: this.events, lastSeq: this.lastSeq, acked: this.acked };
  }
}
