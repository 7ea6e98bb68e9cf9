// History events written by what ran since a moment: Temporal's cost of a run
// (Temporal Cloud bills per action; a cluster pays in persistence writes).

/**
 * Every workflow run started at or after `since` (a Date) on the connected
 * namespace, its history fetched and counted: per workflow type, how many runs
 * and events (total, min and max per run), and the total. Divide the total by
 * the bundles backed up for the events per bundle (session and helpers included).
 */
export async function historyEventsSince(client, since) {
  const byType = {};
  let total = 0;
  for await (const run of client.workflow.list()) {
    if (run.startTime < since) continue;
    const { events } = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
    const n = events?.length ?? 0;
    const t = (byType[run.type] ??= { runs: 0, events: 0, min: Infinity, max: 0 });
    t.runs += 1;
    t.events += n;
    t.min = Math.min(t.min, n);
    t.max = Math.max(t.max, n);
    total += n;
  }
  return { byType, total };
}
