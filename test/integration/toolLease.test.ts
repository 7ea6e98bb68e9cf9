/**
 * The tool lease (issue 14): a session whose tool is gone (SIGKILL) ends by
 * itself within its tool timeout, frees its claims, and says what the tool had
 * acknowledged; a closed terminal (SIGHUP) releases like Ctrl-C; an idle tool
 * keeps its session; a tool that re-attaches in time completes the set.
 * Release ends queued bundles too; a session released from outside is
 * reported so by its tool and by the steering commands.
 */
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSummary, spawnCli } from '../helpers/cliJson.js';
import type { Client } from '@temporalio/client';
import { backup } from '../../client/index.js';
import { bundleClaimWorkflowId, deviceKey } from '../../common/deviceKey.js';
import { bundleClaimsQuery, eventsQuery } from '../../common/messages.js';
import type { SessionResult } from '../../common/session.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, temporalAddress, testClient, uniqueTaskQueue, until, withWorker } from '../helpers/temporal.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const TOOL = fileURLToPath(new URL('../fixtures/tool.mjs', import.meta.url));

/** A child process whose output is collected; `waitFor` resolves once its output matches. */
const spawnNode = ([script, ...args]: string[], env: Record<string, string>) => spawnCli(script!, args, env);

/** Once the tool has acknowledged at least `seq` events of the session. */
const ackedAtLeast = (client: Client, sessionId: string, seq: number) =>
  until(async () => ((await client.workflow.getHandle(sessionId).query(eventsQuery, 0, 0)).acked >= seq ? true : undefined), `ack ${seq}`);

async function claimsOf(client: Client, taskQueue: string): Promise<Record<string, string>> {
  try {
    return await client.workflow.getHandle(bundleClaimWorkflowId(deviceKey(taskQueue))).query(bundleClaimsQuery);
  } catch {
    return {}; // no claim workflow (it completes with no claims left)
  }
}

async function device(prefix: string) {
  const root = await mkdtemp(path.join(os.tmpdir(), `ohbackup-${prefix}-`));
  return { root, dataRoot: path.join(root, 'device'), stateDir: path.join(root, 'state') };
}

describe('a CLI backup whose process is gone', () => {
  it('killed with SIGKILL: the session ends by itself within its tool timeout, frees its claims, names what the tool acknowledged; the next backup succeeds', async () => {
    const d = await device('lease-kill');
    const name = 'com.l.slow';
    await writeBundle(d.dataRoot, { name, files: bigFiles(8) });
    const taskQueue = uniqueTaskQueue('lease-kill');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue };
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      // One file a second: the tool is killed mid-transfer.
      const cli = spawnNode([CLI, 'backup', '--out', path.join(d.root, 'set1'), '--rate', '1', '--tool-timeout', '3s', name], env);
      const sessionId = (await cli.waitFor(/Session (\S+): backing up/))[1]!;
      await ackedAtLeast(client, sessionId, 3); // its begin and two files
      cli.child.kill('SIGKILL');
      await cli.exited;
      const killedAt = Date.now();

      const result = (await client.workflow.getHandle(sessionId).result()) as SessionResult;
      expect(Date.now() - killedAt).toBeLessThan(3000 + 10_000);
      expect(result.endedBy).toBe('abandoned');
      expect(result.abandoned?.reason).toMatch(/^tool silent for \d+ s \(tool timeout 3 s\)$/);
      const acked = result.abandoned!.acknowledgedFiles.find((a) => a.bundleName === name)!;
      expect(acked.files).toBeGreaterThanOrEqual(2);
      expect(acked.uris).toHaveLength(acked.files);
      expect(new Set(acked.uris).size).toBe(acked.uris.length);
      for (const uri of acked.uris) expect(uri).toMatch(/^file\.\d$/);
      expect(acked.ended).toBe(false);
      // Its bundle ended with the code the docs name, counting only what the tool had.
      const outcome = result.bundles.find((b) => b.bundleName === name)!;
      expect(outcome).toMatchObject({ state: 'failed', files: acked.files, error: { code: 13500010 } });
      expect(outcome.error!.message).toMatch(/abandoned by its tool/);
      const meta = await client.workflow.getHandle(sessionId).query<{ currentDetails?: string }>('__temporal_workflow_metadata');
      expect(meta.currentDetails).toMatch(/abandoned by its tool/);
      expect(Object.values(await claimsOf(client, taskQueue))).not.toContain(sessionId);

      const next = spawnNode([CLI, 'backup', '--out', path.join(d.root, 'set2'), '--json', name], env);
      expect(await next.exited, next.err()).toBe(0);
      expect(jsonSummary<{ bundles: Array<{ state: string }> }>(next.out(), 'backup').bundles.map((b) => b.state)).toEqual(['done']);
    });
  });

  it('sent SIGHUP (its terminal closed): it releases the session as Ctrl-C does (exit 130), long before the tool timeout; the next backup succeeds', async () => {
    const d = await device('lease-hup');
    const name = 'com.l.hup';
    await writeBundle(d.dataRoot, { name, files: bigFiles(8) });
    const taskQueue = uniqueTaskQueue('lease-hup');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue };
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const out = path.join(d.root, 'set1');
      const cli = spawnNode([CLI, 'backup', '--out', out, '--rate', '1', '--tool-timeout', '5m', '--json', name], env);
      const sessionId = (await cli.waitFor(/Session (\S+): backing up/))[1]!;
      await ackedAtLeast(client, sessionId, 3);
      cli.child.kill('SIGHUP');
      expect(await cli.exited, cli.err()).toBe(130);
      // Released by the tool itself: not left to the 5 minutes of its tool timeout.
      const result = (await client.workflow.getHandle(sessionId).result()) as SessionResult;
      expect(result.endedBy).toBe('tool');
      expect(Object.values(await claimsOf(client, taskQueue))).not.toContain(sessionId);
      // What the tool reports it got is what its set holds.
      const printed = jsonSummary<{ bundles: Array<{ bundleName: string; setFiles: number }> }>(cli.out(), 'backup');
      const kept = (await readdir(path.join(out, name))).filter((f) => f !== 'manifest.jsonl');
      expect(kept.length).toBe(printed.bundles[0]!.setFiles);
      expect(kept.length).toBeGreaterThanOrEqual(2);

      const next = spawnNode([CLI, 'backup', '--out', path.join(d.root, 'set2'), name], env);
      expect(await next.exited, next.err()).toBe(0);
    });
  });
});

describe('the tool lease while the tool lives', () => {
  it('an idle tool (a long hook, nothing to deliver) keeps its session past the tool timeout: its heartbeat renews the lease', async () => {
    const d = await device('lease-idle');
    const bundle = await writeBundle(d.dataRoot, { name: 'com.l.idle', hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    const taskQueue = uniqueTaskQueue('lease-idle');
    configureTool(taskQueue);
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const rec = new Recorder();
      const session = new backup.SessionBackup(rec.callbacks, { toolTimeoutMs: 1500 });
      await session.appendBundles(['com.l.idle']);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin'));
      const begunAt = Date.now();
      // Wait (on the server's own record) until the session has heard the tool's heartbeat past two tool timeouts.
      const acks = async () =>
        ((await client.workflow.getHandle(session.sessionId).fetchHistory()).events ?? []).filter(
          (e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'ack',
        ).length;
      await until(async () => ((await acks()) >= 7 && Date.now() - begunAt > 3000 ? true : undefined), 'heartbeats');
      // And no more than one a third of the timeout (500 ms) while idle, besides the few acknowledging real events.
      expect(await acks()).toBeLessThanOrEqual(Math.ceil((Date.now() - begunAt) / 500) + 4);
      await writeFile(path.join(bundle, 'go'), '');
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await session.release();
      const result = (await client.workflow.getHandle(session.sessionId).result()) as SessionResult;
      expect(result.endedBy).toBe('tool');
      expect(result.bundles.map((b) => b.state)).toEqual(['done']);
    });
  });

  it('a continued-as-new session keeps its lease: a run whose tool was already silent for the whole timeout ends at once', async () => {
    const d = await device('lease-carried');
    const taskQueue = uniqueTaskQueue('lease-carried');
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      // What continue-as-new hands the next run (workflow.ts): the lease as it stood, 60 s after the tool was last heard from.
      const sessionId = `ohbackup-backup-lease-carried-${path.basename(d.root)}`;
      const handle = await client.workflow.start('sessionWorkflow', {
        taskQueue,
        workflowId: sessionId,
        args: [{ sessionId, kind: 'backup', toolTimeoutMs: 600_000, lease: { timeoutMs: 30_000, seenAt: Date.now() - 60_000 } }],
      });
      const result = (await handle.result()) as SessionResult;
      expect(result.endedBy).toBe('abandoned');
      expect(result.abandoned?.reason).toMatch(/^tool silent for 6\d s \(tool timeout 30 s\)$/);
    });
  });

  it('a tool killed and re-attached within the tool timeout completes the set, every file exactly once', async () => {
    const d = await device('lease-attach');
    const names = ['com.l.one', 'com.l.two'];
    for (const name of names) await writeBundle(d.dataRoot, { name, files: bigFiles(18) });
    const taskQueue = uniqueTaskQueue('lease-attach');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, TOOL_TIMEOUT_MS: '4000' };
    const cursor = path.join(d.root, 'cursor');
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const first = spawnNode([TOOL, 'start', cursor, ...names], env);
      const sessionId = (await first.waitFor(/"sessionId":"([^"]+)"/))[1]!;
      await first.waitFor(/("cb":"onFileReady".*\n.*){3}/);
      first.child.kill('SIGKILL');
      await first.exited;
      // At 3 files a second the rest takes longer than the tool timeout: the attached tool must hold the lease.
      const second = spawnNode([TOOL, 'attach', cursor, sessionId], env);
      expect(await second.exited, second.err()).toBe(0);
      type Line = { cb?: string; bundleName?: string; uri?: string; code?: number };
      const parse = (out: string) =>
        out
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Line);
      const before = parse(first.out());
      const after = parse(second.out());
      // The cursor moves once a callback has returned: the one event the killed tool was inside may come again
      // (its last), and nothing else.
      const inFlight = before.filter((l) => l.cb).at(-1);
      if (inFlight && after.some((l) => JSON.stringify(l) === JSON.stringify(inFlight)))
        after.splice(
          after.findIndex((l) => JSON.stringify(l) === JSON.stringify(inFlight)),
          1,
        );
      const lines = [...before, ...after];
      for (const name of names) {
        const uris = lines.filter((l) => l.cb === 'onFileReady' && l.bundleName === name).map((l) => l.uri);
        expect(new Set(uris).size, `${name}: a file twice`).toBe(uris.length);
        expect(uris.sort()).toEqual([...Array.from({ length: 18 }, (_, i) => `file.${i}`), 'manage.json'].sort());
        expect(lines.filter((l) => l.cb === 'onBundleEnd' && l.bundleName === name)).toEqual([{ cb: 'onBundleEnd', bundleName: name }]);
      }
      const result = (await client.workflow.getHandle(sessionId).result()) as SessionResult;
      expect(result.endedBy).toBe('tool');
      expect(result.abandoned).toBeUndefined();
    });
  });
});

describe('release with a queued bundle, and a bundle held by that session', () => {
  it('the queued bundle begins and ends with 13500011, then onAllBundlesEnd; a second session is told who holds the bundle, since when, and how to free it', async () => {
    const d = await device('lease-queued');
    const held = await writeBundle(d.dataRoot, { name: 'com.q.held', hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    await writeBundle(d.dataRoot, { name: 'com.q.queued' });
    const taskQueue = uniqueTaskQueue('lease-queued');
    configureTool(taskQueue);
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const rec = new Recorder();
      const session = new backup.SessionBackup(rec.callbacks, { maxConcurrentBundles: 1 });
      await session.appendBundles(['com.q.held', 'com.q.queued']);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin' && x.bundleName === 'com.q.held'));

      const other = new Recorder();
      const second = new backup.SessionBackup(other.callbacks);
      await second.appendBundles(['com.q.held']);
      await other.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      const conflict = other.of('com.q.held').find((c) => c.cb === 'onBundleBegin')!;
      expect(conflict.code).toBe(13500013);
      expect(conflict.message).toMatch(
        new RegExp(`in the active session ${session.sessionId} since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z; \`ohbackup release ${session.sessionId}\` frees it`),
      );
      await second.release();

      await session.release();
      await writeFile(path.join(held, 'go'), '');
      expect(rec.of('com.q.queued').map((c) => [c.cb, c.code])).toEqual([
        ['onBundleBegin', 13500011],
        ['onBundleEnd', 13500011],
      ]);
      expect(rec.calls.at(-1)?.cb).toBe('onAllBundlesEnd');
      expect(rec.count('onAllBundlesEnd')).toBe(1);
    });
  });
});

describe('a session released from outside', () => {
  it('by `ohbackup release` (warned: its tool is attached): the tool reports "released by another client" and exits 3; steering the ended session says how it ended', async () => {
    const d = await device('lease-foreign');
    await writeBundle(d.dataRoot, { name: 'com.f.quick' });
    await writeBundle(d.dataRoot, { name: 'com.f.held', hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    const taskQueue = uniqueTaskQueue('lease-foreign');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue };
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const cli = spawnNode([CLI, 'backup', '--out', path.join(d.root, 'set'), '--json', 'com.f.quick', 'com.f.held'], env);
      const sessionId = (await cli.waitFor(/Session (\S+): backing up/))[1]!;
      await cli.waitFor(/done\s+com\.f\.quick/);
      const release = spawnNode([CLI, 'release', sessionId], env);
      expect(await release.exited, release.err()).toBe(0);
      expect(release.err()).toMatch(/warning: the tool of \S+ is still attached/);
      expect(await cli.exited, cli.err()).toBe(3);
      expect(cli.err()).toMatch(/The session was released by another client/);
      const printed = jsonSummary<{ endedElsewhere: string | null; bundles: Array<{ bundleName: string; state: string }>; error: unknown }>(
        cli.out(),
        'backup',
      );
      expect(printed.endedElsewhere).toBe('released by another client');
      expect(printed.error).toBeNull();
      expect(printed.bundles.find((b) => b.bundleName === 'com.f.quick')?.state).toBe('done');
      expect(printed.bundles.find((b) => b.bundleName === 'com.f.held')?.state).not.toBe('done');

      for (const args of [
        ['release', sessionId],
        ['cancel', sessionId, 'com.f.held'],
      ]) {
        const again = spawnNode([CLI, ...args], env);
        expect(await again.exited).toBe(1);
        expect(again.err()).toMatch(new RegExp(`the session ${sessionId} has ended at \\S+: released by another client`));
      }
    });
  });

  it("by the UI's Request Cancellation: a release by another client; the tool exits 1 with nothing done", async () => {
    const d = await device('lease-uicancel');
    await writeBundle(d.dataRoot, { name: 'com.u.held', hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    const taskQueue = uniqueTaskQueue('lease-uicancel');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue };
    const client = await testClient();
    await withWorker({ taskQueue, dataRoot: d.dataRoot, stateDir: d.stateDir }, async () => {
      const cli = spawnNode([CLI, 'backup', '--out', path.join(d.root, 'set'), 'com.u.held'], env);
      const sessionId = (await cli.waitFor(/Session (\S+): backing up/))[1]!;
      await cli.waitFor(/begin\s+com\.u\.held/);
      await client.workflow.getHandle(sessionId).cancel();
      expect(await cli.exited, cli.err()).toBe(1);
      expect(cli.out() + cli.err(), cli.out() + cli.err()).toMatch(/released by another client/);
      const result = (await client.workflow.getHandle(sessionId).result()) as SessionResult;
      expect(result.endedBy).toBe('another client');
      expect(Object.values(await claimsOf(client, taskQueue))).not.toContain(sessionId);
    });
  });
});
