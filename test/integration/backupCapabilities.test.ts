/**
 * runBackup with bundles named reads the device's capability file while its
 * session starts: a read that fails after the session has started fails the
 * run with that very error, releases the session and leaves the set unfinished.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { BusinessError } from '../../common/businessError.js';
import { ErrorCode } from '../../common/errors.js';
import { runBackup, type BackupProgressEvent } from '../../client/runs/runBackup.js';
import { writeBundle } from '../helpers/device.js';
import { configureTool, testClient, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

/** `client`, but its capability workflow waits for `gate`, then fails with `failure`. */
function failingCapabilities(client: Client, gate: Promise<unknown>, failure: Error): Client {
  const workflow = new Proxy(client.workflow, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (prop !== 'execute') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      return async (type: unknown, ...rest: unknown[]) => {
        if (type !== 'capabilitiesWorkflow') return (value as (...a: unknown[]) => unknown).call(target, type, ...rest);
        await gate;
        throw failure;
      };
    },
  });
  return new Proxy(client, { get: (target, prop) => (prop === 'workflow' ? workflow : (Reflect.get(target, prop) as unknown)) });
}

describe('runBackup: the capability file read beside the session', () => {
  it('a read that fails once a bundle has begun fails the run with its message and code; the session is released, the set unfinished', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-caps-late-'));
    const dataRoot = path.join(root, 'device');
    // Held by its hook: still running when the read fails, so the release has a bundle to stop.
    await writeBundle(dataRoot, { name: 'com.caps.held', files: { 'a.txt': 'a' }, hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    const taskQueue = uniqueTaskQueue('caps-late');
    configureTool(taskQueue);
    const client = await testClient();
    const out = path.join(root, 'set');
    let begun!: () => void;
    const gate = new Promise<void>((resolve) => (begun = resolve));
    const failure = new BusinessError(ErrorCode.IO_ERROR, 'I/O error: the capability file could not be written');
    const events: BackupProgressEvent[] = [];
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const run = runBackup({
        out,
        bundles: ['com.caps.held'],
        client: failingCapabilities(client, gate, failure),
        taskQueue,
        onProgress: (e) => {
          events.push(e);
          if (e.type === 'begin') begun();
        },
      });
      // Read before the session, as it was, the gate would never open: the run would not end.
      await expect(run).rejects.toMatchObject({ code: ErrorCode.IO_ERROR, message: failure.message });
      const start = events.find((e) => e.type === 'start');
      expect(start?.type).toBe('start');
      const { status } = await client.workflow.getHandle((start as { sessionId: string }).sessionId).describe();
      expect(status.name).not.toBe('RUNNING');
    });
    const summary = JSON.parse(readFileSync(path.join(out, 'backup_set.json'), 'utf8')) as { complete: boolean; why: string; writer?: unknown };
    expect(summary.complete).toBe(false);
    expect(summary.why).toContain(failure.message);
    // Not a set to --attach to: its session is gone.
    expect(summary.writer).toBeUndefined();
    expect(existsSync(path.join(out, 'capabilities.json'))).toBe(false);
  });
});
