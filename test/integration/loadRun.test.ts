/**
 * A bounded load run in CI: `scripts/load.js` (what `npm run load` runs) with
 * 4 sessions of 3 bundles at once, on one and then two real worker processes
 * against the test's dev server. Every set verifies, no callback comes twice,
 * every session completes; the figures are written. Needs `dist/` (npm test builds it).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { temporalAddress } from '../helpers/temporal.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('load run (bounded)', () => {
  it('4 sessions × 3 bundles at once on one and on two worker processes: all complete, every set verified, no callback twice', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-load-'));
    const jsonOut = path.join(dir, 'load.json');
    const args = [
      'scripts/load.js',
      '--address',
      temporalAddress(),
      '--sessions',
      '4',
      '--bundles',
      '3',
      '--workers',
      '1,2',
      '--scale',
      '0.02',
      '--timeout',
      '300',
      '--json-out',
      jsonOut,
    ];
    const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, OHBACKUP_STATE_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, output).toBe(0);

    const report = JSON.parse(await readFile(jsonOut, 'utf8'));
    expect(report.runs.map((r: { workers: number }) => r.workers)).toEqual([1, 2]);
    for (const run of report.runs) {
      expect(run.sessionsCompleted).toBe(4);
      expect(run.verificationProblems).toEqual([]);
      expect(run.duplicateCallbacks).toBe(0);
      expect(run.errors).toEqual([]);
      expect(run.setFilesVerified).toBe(run.filesHandedOver);
      expect(run.callbackLatencyMs.samples).toBe(run.filesHandedOver);
      expect(run.workerPeakRssBytes).toHaveLength(run.workers);
      for (const rss of run.workerPeakRssBytes) expect(rss).toBeGreaterThan(0);
    }
  }, 600_000);
});
