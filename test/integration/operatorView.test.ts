/**
 * What an operator sees of a session through the Temporal API (the UI's own
 * view): a failed bundle's child workflow Failed, a cancelled one's Canceled,
 * the session Completed with OhbackupOutcome "partial" and its device, who
 * started it, and its final table, still readable once every worker has
 * stopped; the worker's log has one line per session start and end and per
 * bundle end, without stack dumps.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { OhbackupDevice, OhbackupOutcome, OhbackupState } from '../../common/searchAttributes.js';
import { bundleWorkflowId, type SessionResult } from '../../common/session.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, testClient, uniqueTaskQueue } from '../helpers/temporal.js';
import { startWorkerProcess } from '../helpers/workerProcess.js';

const CRASH = 'com.ops.crash';
const PLAIN = 'com.ops.plain';
const HANG = 'com.ops.hang';
const GONE = 'com.ops.gone';

let root: string | undefined;
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** Visibility is eventually consistent: lists until `pred` holds of the IDs found (bounded). */
async function listUntil(client: Awaited<ReturnType<typeof testClient>>, query: string, pred: (ids: string[]) => boolean): Promise<string[]> {
  let ids: string[] = [];
  for (let i = 0; i < 100; i++) {
    ids = [];
    for await (const w of client.workflow.list({ query })) ids.push(w.workflowId);
    if (pred(ids)) return ids;
    await new Promise((r) => setTimeout(r, 100));
  }
  return ids;
}

describe('the Temporal UI shows failure as failure', () => {
  it('failed child Failed, cancelled child Canceled, terminated child ends its bundle; session partial, its table kept after the workers stopped', async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-ops-'));
    const dataRoot = path.join(root, 'device');
    await writeBundle(dataRoot, { name: CRASH, hooks: { onBackup: 'echo "cannot reach the database" >&2; exit 7' } });
    await writeBundle(dataRoot, { name: PLAIN, files: { 'a.txt': 'a', 'b.txt': 'b'.repeat(3000) } });
    // Each tells the test through a FIFO that its hook runs, then waits: one is cancelled, one's workflow terminated.
    for (const name of [HANG, GONE]) {
      await writeBundle(dataRoot, { name, hooks: { onBackup: 'echo $$ > ready; sleep 600' } });
      execFileSync('mkfifo', [path.join(dataRoot, name, 'ready')]);
    }
    const taskQueue = uniqueTaskQueue('ops');
    configureTool(taskQueue);
    const client = await testClient();
    const worker = await startWorkerProcess({ taskQueue, dataRoot, stateDir: path.join(root, 'state'), prebuiltWorkflows: true });
    const rec = new Recorder();
    let sessionId = '';
    try {
      const session = new backup.SessionBackup(rec.callbacks, { maxConcurrentBundles: 4, target: 'backup set /srv/sets/nightly' });
      sessionId = session.sessionId;
      await session.appendBundles([CRASH, PLAIN, HANG, GONE]);
      await readFile(path.join(dataRoot, HANG, 'ready'), 'utf8');
      await readFile(path.join(dataRoot, GONE, 'ready'), 'utf8');
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin' && x.bundleName === HANG));
      expect(session.cancel(HANG)).toBe(0);
      await client.workflow.getHandle(bundleWorkflowId(sessionId, GONE)).terminate('an operator ended it');
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await session.release();
    } finally {
      await worker.kill('SIGTERM');
    }
    const ends = Object.fromEntries(rec.calls.filter((c) => c.cb === 'onBundleEnd').map((c) => [c.bundleName, c.code]));
    // Exactly one end each; the terminated child never reported its own: the session ended its bundle.
    expect(rec.count('onBundleEnd')).toBe(4);
    expect(ends).toEqual({ [CRASH]: 13500004, [PLAIN]: undefined, [HANG]: 13500010, [GONE]: 13500004 });

    // No worker runs now: what follows is what the UI can show of closed workflows.
    const status = async (bundle: string) => (await client.workflow.getHandle(bundleWorkflowId(sessionId, bundle)).describe()).status.name;
    expect(await status(CRASH)).toBe('FAILED');
    expect(await status(PLAIN)).toBe('COMPLETED');
    expect(await status(HANG)).toBe('CANCELLED');
    expect(await status(GONE)).toBe('TERMINATED');

    const described = await client.workflow.getHandle(sessionId).describe();
    expect(described.status.name).toBe('COMPLETED');
    expect(described.typedSearchAttributes.get(OhbackupOutcome)).toBe('partial');
    expect(described.typedSearchAttributes.get(OhbackupState)).toBe('released');
    expect(described.typedSearchAttributes.get(OhbackupDevice)).toBe(taskQueue);
    expect(await described.staticSummary()).toBe('ohbackup backup session: backup set /srv/sets/nightly');
    expect(await described.staticDetails()).toContain(`started by ${os.userInfo().username}@${os.hostname()}`);

    // The final table: in the result (the UI's "Result") and the memo, with sizes in human units.
    const result = (await client.workflow.getHandle(sessionId).result()) as SessionResult;
    expect(result.outcome).toBe('partial');
    expect(result.summaryMarkdown).toMatch(/^\*\*partial\*\*: 1 of 4 bundles done, 2 files, [\d.]+ KiB\n/);
    expect(result.summaryMarkdown).toContain(`Started by ${os.userInfo().username}@${os.hostname()}; backup set /srv/sets/nightly`);
    // A Markdown table, padded for the memo's plain text: a row per bundle.
    const row = (bundle: string) =>
      result.summaryMarkdown
        .split('\n')
        .find((l) => l.startsWith(`| \`${bundle}\``))
        ?.split('|')
        .map((c) => c.trim());
    expect(row(CRASH)).toEqual([
      '',
      `\`${CRASH}\``,
      'failed',
      '0',
      '0 B',
      expect.stringMatching(/^[\d.]+ (ms|s)$/),
      expect.stringMatching(/^13500004 Application extension death: hook onBackup of com\.ops\.crash exited/),
      '',
    ]);
    expect(row(PLAIN)).toEqual(['', `\`${PLAIN}\``, 'done', '2', expect.stringMatching(/^[\d.]+ KiB$/), expect.stringMatching(/^[\d.]+ (ms|s)$/), '', '']);
    expect(row(HANG)?.[2]).toBe('cancelled');
    expect(described.memo?.summary).toBe(result.summaryMarkdown);

    // Filterable as the UI filters: failed children by ExecutionStatus, sessions by outcome.
    const failed = await listUntil(client, `ExecutionStatus = "Failed" AND TaskQueue = "${taskQueue}"`, (ids) => ids.length > 0);
    expect(failed).toEqual([bundleWorkflowId(sessionId, CRASH)]);
    const partial = await listUntil(client, `OhbackupOutcome = "partial" AND OhbackupDevice = "${taskQueue}"`, (ids) => ids.length > 0);
    expect(partial).toEqual([sessionId]);

    // The worker's log (text, INFO by default): a line per session start and end and per bundle end, no stacks.
    const log = worker.output();
    expect(log).toMatch(
      new RegExp(`INFO  session started workflowId=${sessionId} kind=backup device=${taskQueue} host=\\S+ user=\\S+ target="backup set /srv/sets/nightly"`),
    );
    expect(log).toMatch(
      new RegExp(`INFO  bundle ended workflowId=${sessionId} bundleName=${CRASH} .*outcome=failed files=0 bytes=0 durationMs=\\d+ errorCode=13500004`),
    );
    expect(log).toMatch(new RegExp(`INFO  bundle ended workflowId=${sessionId} bundleName=${PLAIN} .*outcome=done files=2 bytes=\\d+ durationMs=\\d+`));
    expect(log).toMatch(new RegExp(`INFO  session ended .*outcome=partial bundles=4 files=2 bytes=\\d+`));
    expect(log).not.toMatch(/^\s+at /m);
    await client.connection.close();
  });
});
