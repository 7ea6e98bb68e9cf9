/**
 * One `ohbackup dev` per state folder: a second one on a folder in use exits
 * with a message naming the running one, which keeps running; a lock left by
 * a process that is gone does not block the next start.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { writeBundle } from '../helpers/device.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** `ohbackup dev --headless` on `stateDir`; `ready` resolves with its server address once its worker is up, or null if it exits first. */
function startDev(stateDir: string, dataRoot: string) {
  const child = spawn(process.execPath, [CLI, 'dev', '--headless', '--port', '0', '--data-root', dataRoot], {
    env: { ...process.env, OHBACKUP_STATE_DIR: stateDir, OHBACKUP_TASK_QUEUE: `devlock-${process.pid}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = new Promise<string | null>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /Temporal server {2}(\S+)/.exec(stdout);
      if (m && stdout.includes('Worker ready')) resolve(m[1]!);
    });
    void exited.then(() => resolve(null));
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, ready, exited, output: () => `${stdout}\n${stderr}`, stderr: () => stderr };
}

async function answers(address: string): Promise<boolean> {
  const connection = await Connection.connect({ address, connectTimeout: 2000 });
  try {
    await connection.workflowService.getSystemInfo({});
    return true;
  } finally {
    await connection.close();
  }
}

describe('ohbackup dev: one server per state folder', () => {
  it('a second dev on the same state folder exits non-zero naming the first, which keeps running; a stale lock is taken over', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-devlock-'));
    const dataRoot = path.join(root, 'device');
    await writeBundle(dataRoot, { name: 'com.devlock.a' });
    const stateDir = path.join(root, 'state');

    const first = startDev(stateDir, dataRoot);
    try {
      const address = await first.ready;
      expect(address, first.output()).not.toBeNull();

      const second = startDev(stateDir, dataRoot);
      try {
        // It must end before it is ready (null); a second server coming up is the failure (then stopped below).
        expect(await second.ready, second.output()).toBeNull();
        expect(await second.exited).not.toBe(0);
        expect(second.stderr()).toContain(`in use by another ohbackup dev (pid ${first.child.pid}`);
        expect(second.stderr()).toContain(address!);
      } finally {
        if (second.child.exitCode === null) {
          second.child.kill('SIGINT');
          await second.exited;
        }
      }

      expect(first.child.exitCode).toBeNull();
      expect(await answers(address!)).toBe(true);
    } finally {
      first.child.kill('SIGINT');
      await first.exited;
    }

    // A lock whose process is gone (killed, crashed): the next dev starts.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await mkdir(stateDir, { recursive: true });
    await writeFile(path.join(stateDir, 'dev.lock'), JSON.stringify({ pid: Number(gone.stdout), host: os.hostname(), startedAt: new Date().toISOString() }));
    const third = startDev(stateDir, dataRoot);
    try {
      expect(await third.ready, third.output()).not.toBeNull();
    } finally {
      third.child.kill('SIGINT');
      await third.exited;
    }
  });
});
