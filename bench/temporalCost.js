// The Temporal cost of a run: history events written by every workflow it
// started or touched. The bench's dev server serves only the bench, and its
// steps run one after another, so "the run's workflows" are those open during
// its window: listed from the server's visibility (every run, including
// continued-as-new ones), each history fetched and its events in the window
// counted. The workflows are told apart by their IDs (common/session.ts,
// common/deviceKey.ts, client/capabilities.ts): the session, its bundle
// children `<session>/<bundle>`, the device's claims workflow, capability
// requests and anything else (counted too, as "other").
import { getClient } from '../dist/client/connection.js';

const tsMs = (t) => (t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : NaN);

/** What a workflow ID is, for a run whose session is `sessionId`. */
export function workflowKind(workflowId, sessionId) {
  if (workflowId === sessionId) return 'session';
  if (workflowId.startsWith(`${sessionId}/`)) return 'bundle';
  if (workflowId.startsWith('ohbackup-bundle-claims/')) return 'claims';
  if (workflowId.startsWith('ohbackup-capabilities-')) return 'capabilities';
  return 'other';
}

/** Every workflow run open at some time since `sinceMs` (ms), from the server's list. */
async function runsInWindow(client, sinceMs) {
  const out = [];
  for await (const w of client.workflow.list()) {
    const closed = w.closeTime?.getTime();
    if (closed === undefined || closed >= sinceMs) out.push(w);
  }
  return out;
}

/** Sessions (`ohbackup-<kind>-<uuid>`, common/sessions), their bundle children and the claims workflows: what a step leaves finishing. */
const SESSION_WORK = /^ohbackup-(backup|restore|incremental)-|^ohbackup-bundle-claims\//;

/**
 * Waits (bounded) until no session, bundle or claims workflow runs: a
 * released session of the step before still writing its last events would be
 * counted with the next. Resolves with whether it got there.
 */
export async function quiesce(waitMs = 60_000) {
  const client = await getClient();
  const deadline = Date.now() + waitMs;
  for (;;) {
    let running = 0;
    for await (const w of client.workflow.list()) if (w.status.name === 'RUNNING' && SESSION_WORK.test(w.workflowId)) running++;
    if (running === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * History events of the run of session `sessionId` since `sinceMs` (wall
 * clock; the next step has not started). Waits (bounded) until the session's own workflows are closed
 * and listed, so nothing is counted half-way. `expectBundles`: how many bundle
 * children the listing must show.
 */
export async function temporalCost({ sessionId, sinceMs, expectBundles, waitMs = 60_000 }) {
  const client = await getClient();
  const deadline = Date.now() + waitMs;
  let runs;
  let settled = false;
  // Visibility is eventually consistent: poll until the session and all its bundle children are listed closed.
  for (;;) {
    runs = await runsInWindow(client, sinceMs);
    const own = runs.filter((w) => ['session', 'bundle'].includes(workflowKind(w.workflowId, sessionId)));
    const bundles = own.filter((w) => workflowKind(w.workflowId, sessionId) === 'bundle').length;
    if (bundles >= expectBundles && own.some((w) => w.workflowId === sessionId) && own.every((w) => w.status.name !== 'RUNNING')) {
      settled = true;
      break;
    }
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const workflows = [];
  for (const w of runs) {
    const history = await client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
    const events = history.events ?? [];
    // Events from the run's start: those of a long-lived helper (the claims workflow) before it are another run's.
    const mine = events.filter((e) => tsMs(e.eventTime) >= sinceMs);
    const counted = mine.length;
    if (counted === 0) continue;
    workflows.push({
      byType: countByType(mine),
      workflowId: w.workflowId,
      runId: w.runId,
      type: w.type,
      kind: workflowKind(w.workflowId, sessionId),
      status: w.status.name,
      events: counted,
      historyLength: events.length,
    });
  }
  const byKind = {};
  for (const w of workflows) {
    const k = (byKind[w.kind] ??= { workflows: 0, events: 0, maxEvents: 0, byType: {} });
    k.workflows++;
    k.events += w.events;
    k.maxEvents = Math.max(k.maxEvents, w.events);
    for (const [type, n] of Object.entries(w.byType)) k.byType[type] = (k.byType[type] ?? 0) + n;
  }
  const total = workflows.reduce((n, w) => n + w.events, 0);
  return {
    settled,
    total,
    workflows: workflows.length,
    byKind,
    longestHistory: Math.max(0, ...workflows.map((w) => w.historyLength)),
    list: workflows,
  };
}

/**
 * What a history is made of: events counted by type (the attributes' name, `workflowTaskCompleted`), signals
 * by name (`signal:ack`), so an A/B says which events a change added or saved.
 */
export function countByType(events) {
  const out = {};
  for (const e of events) {
    const attrs = Object.keys(e).find((k) => k.endsWith('EventAttributes') && e[k]);
    let type = attrs ? attrs.slice(0, -'EventAttributes'.length) : `type ${e.eventType}`;
    if (type === 'workflowExecutionSignaled') type = `signal:${e.workflowExecutionSignaledEventAttributes.signalName}`;
    out[type] = (out[type] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
}

/** "session 97, bundle 50 × 34–39 …": a short account of where the events went. */
export function describeCost(cost) {
  return Object.entries(cost.byKind)
    .map(([kind, k]) => (k.workflows === 1 ? `${kind} ${k.events}` : `${kind} ${k.workflows} runs, ${k.events} (max ${k.maxEvents})`))
    .join('; ');
}
