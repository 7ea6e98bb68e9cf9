/**
 * `ohbackup dev --ui-port N`: the links its own worker makes (a scheduled
 * run's summary) point to that UI, not to the default port 8233.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../workers/devServer.js';
import { writeBundle } from '../helpers/device.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function ohbackup(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('ohbackup dev on another UI port', () => {
  it('scheduled runs link to the UI on its --ui-port', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-devui-'));
    const dataRoot = path.join(root, 'device');
    await writeBundle(dataRoot, { name: 'com.devui.notes' });
    const uiPort = await freePort();
    const { OHBACKUP_UI_URL: _unset, ...env } = process.env;
    const dev = spawn(process.execPath, [CLI, 'dev', '--port', '0', '--ui-port', String(uiPort), '--data-root', dataRoot], {
      env: { ...env, OHBACKUP_STATE_DIR: path.join(root, 'state'), OHBACKUP_LOG_LEVEL: 'WARN' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => dev.once('exit', resolve));
    try {
      let out = '';
      const banner = await new Promise<string>((resolve, reject) => {
        dev.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('Worker ready')) resolve(out);
        });
        dev.stderr.on('data', (d: Buffer) => (out += d.toString()));
        dev.once('exit', (code) => reject(new Error(`ohbackup dev exited (${code}):\n${out}`)));
      });
      const address = /Temporal server\s+(\S+)/.exec(banner)![1]!;
      expect(banner).toMatch(new RegExp(`Web UI\\s+http://127\\.0\\.0\\.1:${uiPort}\\b`));
      const cli = { TEMPORAL_ADDRESS: address, OHBACKUP_STATE_DIR: path.join(root, 'state') };
      const created = await ohbackup(['schedule', 'create', 'devui', '--dest', path.join(root, 'sets'), '--every', '24h', '--paused'], cli);
      expect(created.code, created.stderr).toBe(0);
      const run = await ohbackup(['schedule', 'trigger', 'devui', '--wait', '--json'], cli);
      expect(run.code, run.stderr).toBe(0);
      const { summary } = (JSON.parse(run.stdout) as { run: { summary: { uiUrl: string; sessionId: string } } }).run;
      expect(summary.uiUrl).toBe(`http://127.0.0.1:${uiPort}/namespaces/default/workflows/${encodeURIComponent(summary.sessionId)}`);
    } finally {
      dev.kill('SIGINT');
      await exited;
      await rm(root, { recursive: true, force: true });
    }
  });
});
