/**
 * The --json contract (docs/cli.md, "JSON output"): every command's output,
 * success and error, fits its published schema (cli/output/schemas.ts). The
 * cases are a registry: a command added later is covered by adding its lines
 * here, and the last check fails while some schema has no success or no error case.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { findRestic } from '../../engine/repository/index.js';
import { COMMAND_SCHEMAS, checkJsonOutput, type JsonCommand } from '../../cli/output/schemas.js';
import { runCli, spawnCli } from '../helpers/cliJson.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, temporalAddress, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

interface Ctx {
  root: string;
  dataRoot: string;
  set: string;
  /** A session that has ended (the slow backup's). */
  ended: string;
  /** A session held running by its tool (this test's library session). */
  running: string;
  /** A local restic repository (made by the `repo init` case), and a path that holds none. */
  repo: string;
  noRepo: string;
}

/** One case: the command's schema, its arguments, the exit code it must end with, and whether that is a summary or an error line. */
interface Case {
  command: JsonCommand;
  args: (c: Ctx) => string[];
  exit: number;
  line: 'summary' | 'error';
  /** The case runs restic (a repository command): skipped, with the reason printed, where restic cannot be found. */
  restic?: true;
}

const SLOW = 'com.json.slow';
const HELD = 'com.json.held';
const scheduleId = `json-${process.pid}`;

const REGISTRY: Case[] = [
  { command: 'sample-device', args: (c) => ['sample-device', path.join(c.root, 'sample'), '--scale', '0.01'], exit: 0, line: 'summary' },
  { command: 'sample-device', args: (c) => ['sample-device', path.join(c.root, 'sample2'), '--scale', 'lots'], exit: 2, line: 'error' },
  { command: 'backup', args: (c) => ['backup', '--out', path.join(c.root, 'set-b'), SLOW], exit: 0, line: 'summary' },
  { command: 'backup', args: (c) => ['backup', '--out', c.set, SLOW], exit: 2, line: 'error' },
  { command: 'backup', args: () => ['backup', '--nope'], exit: 2, line: 'error' },
  { command: 'restore', args: (c) => ['restore', '--from', c.set, '--to', path.join(c.root, 'restored')], exit: 0, line: 'summary' },
  { command: 'restore', args: (c) => ['restore', '--from', path.join(c.root, 'nowhere'), '--to', path.join(c.root, 'r2')], exit: 2, line: 'error' },
  { command: 'restore --dry-run', args: (c) => ['restore', '--from', c.set, '--to', path.join(c.root, 'dry'), '--dry-run'], exit: 0, line: 'summary' },
  {
    command: 'restore --dry-run',
    args: (c) => ['restore', '--from', c.set, '--to', path.join(c.root, 'dry'), '--dry-run', 'com.json.absent'],
    exit: 2,
    line: 'error',
  },
  { command: 'sessions', args: () => ['sessions', '--limit', '3'], exit: 0, line: 'summary' },
  { command: 'sessions', args: () => ['sessions', '--limit', '0'], exit: 2, line: 'error' },
  { command: 'status', args: (c) => ['status', c.running], exit: 0, line: 'summary' },
  { command: 'status', args: (c) => ['status', c.ended], exit: 0, line: 'summary' },
  { command: 'status', args: () => ['status', 'ohbackup-backup-nosuchsession'], exit: 1, line: 'error' },
  { command: 'rate', args: (c) => ['rate', c.running, HELD, '0'], exit: 0, line: 'summary' },
  { command: 'rate', args: (c) => ['rate', c.running, 'com.json.absent', '5'], exit: 1, line: 'summary' },
  { command: 'rate', args: (c) => ['rate', c.running, HELD, 'fast'], exit: 2, line: 'error' },
  { command: 'timer', args: (c) => ['timer', c.running, HELD, '600000'], exit: 0, line: 'summary' },
  { command: 'timer', args: (c) => ['timer', c.running, HELD, '99999999'], exit: 2, line: 'error' },
  { command: 'cancel', args: (c) => ['cancel', c.running, 'com.json.absent'], exit: 1, line: 'summary' },
  { command: 'cancel', args: (c) => ['cancel', c.ended, SLOW], exit: 1, line: 'error' },
  { command: 'cancel', args: (c) => ['cancel', c.running, HELD], exit: 0, line: 'summary' },
  { command: 'release', args: (c) => ['release', c.running], exit: 0, line: 'summary' },
  { command: 'release', args: (c) => ['release', c.running], exit: 1, line: 'error' },
  {
    command: 'schedule create',
    args: (c) => ['schedule', 'create', scheduleId, '--dest', path.join(c.root, 'sched'), '--bundles', SLOW, '--every', '24h', '--paused'],
    exit: 0,
    line: 'summary',
  },
  {
    command: 'schedule create',
    args: (c) => ['schedule', 'create', scheduleId, '--dest', path.join(c.root, 'sched'), '--every', '24h'],
    exit: 1,
    line: 'error',
  },
  { command: 'schedule list', args: () => ['schedule', 'list'], exit: 0, line: 'summary' },
  { command: 'schedule list', args: () => ['schedule', 'list', '--bogus'], exit: 2, line: 'error' },
  { command: 'schedule describe', args: () => ['schedule', 'describe', scheduleId], exit: 0, line: 'summary' },
  { command: 'schedule describe', args: () => ['schedule', 'describe', `${scheduleId}-none`], exit: 1, line: 'error' },
  { command: 'schedule unpause', args: () => ['schedule', 'unpause', scheduleId], exit: 0, line: 'summary' },
  { command: 'schedule unpause', args: () => ['schedule', 'unpause', `${scheduleId}-none`], exit: 1, line: 'error' },
  { command: 'schedule pause', args: () => ['schedule', 'pause', scheduleId], exit: 0, line: 'summary' },
  { command: 'schedule pause', args: () => ['schedule', 'pause', 'bad id!'], exit: 2, line: 'error' },
  { command: 'schedule trigger', args: () => ['schedule', 'trigger', scheduleId, '--wait'], exit: 0, line: 'summary' },
  { command: 'schedule trigger', args: () => ['schedule', 'trigger', `${scheduleId}-none`], exit: 1, line: 'error' },
  { command: 'schedule delete', args: () => ['schedule', 'delete', scheduleId], exit: 0, line: 'summary' },
  { command: 'schedule delete', args: () => ['schedule', 'delete', scheduleId], exit: 1, line: 'error' },
  { command: 'check', args: (c) => ['check', c.set], exit: 0, line: 'summary' },
  // Repositories: a local one, initialised by the first case; the password from RESTIC_PASSWORD_FILE.
  { command: 'repo init', args: (c) => ['repo', 'init', '--repo', c.repo], exit: 0, line: 'summary', restic: true },
  { command: 'repo init', args: (c) => ['repo', 'init', '--repo', c.repo], exit: 1, line: 'error', restic: true },
  { command: 'backup', args: (c) => ['backup', '--repo', c.repo, '--incremental', SLOW], exit: 0, line: 'summary', restic: true },
  { command: 'backup', args: (c) => ['backup', '--repo', c.repo, '--base', 'latest', SLOW], exit: 0, line: 'summary', restic: true },
  { command: 'backup', args: (c) => ['backup', '--repo', c.noRepo, SLOW], exit: 1, line: 'error', restic: true },
  {
    command: 'restore',
    args: (c) => ['restore', '--repo', c.repo, '--from', 'latest', '--to', path.join(c.root, 'from-repo')],
    exit: 0,
    line: 'summary',
    restic: true,
  },
  {
    command: 'restore',
    args: (c) => ['restore', '--repo', c.repo, '--from', 'deadbeef', '--to', path.join(c.root, 'from-repo2')],
    exit: 1,
    line: 'error',
    restic: true,
  },
  { command: 'snapshots', args: (c) => ['snapshots', '--repo', c.repo], exit: 0, line: 'summary', restic: true },
  { command: 'snapshots', args: (c) => ['snapshots', '--repo', c.noRepo], exit: 1, line: 'error', restic: true },
  { command: 'check', args: (c) => ['check', '--repo', c.repo], exit: 0, line: 'summary', restic: true },
  { command: 'check', args: (c) => ['check', '--repo', c.noRepo], exit: 1, line: 'error', restic: true },
  { command: 'diff', args: (c) => ['diff', '--repo', c.repo, 'latest', 'latest'], exit: 0, line: 'summary', restic: true },
  { command: 'diff', args: (c) => ['diff', '--repo', c.repo, 'latest', 'deadbeef'], exit: 1, line: 'error', restic: true },
  { command: 'forget', args: (c) => ['forget', '--repo', c.repo, '--keep-last', '5', '--dry-run'], exit: 0, line: 'summary', restic: true },
  { command: 'forget', args: (c) => ['forget', '--repo', c.repo], exit: 2, line: 'error', restic: true },
  // Device-side runs: their summaries need device workers with repositories (test/integration/fleet.test.ts checks them against these schemas).
  { command: 'devices', args: () => ['devices'], exit: 0, line: 'summary' },
  { command: 'devices', args: () => ['devices', '--nope'], exit: 2, line: 'error' },
  { command: 'device run', args: () => ['backup', '--on-device', '--repo', 'offsite'], exit: 2, line: 'error' },
  { command: 'device run', args: () => ['follow', 'not a run'], exit: 2, line: 'error' },
  { command: 'device run started', args: () => ['backup', '--on-device', '--detach', '--device', 'phone-1'], exit: 2, line: 'error' },
];
/** Summaries checked by the fleet test, which has the device workers and the repository they need. */
const FLEET_SUMMARIES = ['device run', 'device run started'];

/** Why the repository cases cannot run here (no restic), or undefined. */
async function resticMissing(): Promise<string | undefined> {
  try {
    await findRestic();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

describe('the --json contract', () => {
  it('every command, success and error, prints JSON Lines that fit the published schemas; a slow backup streams status lines', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-json-'));
    const dataRoot = path.join(root, 'device');
    // Six files handed over one by one at 2 per second: a backup of some seconds.
    await writeBundle(dataRoot, { name: SLOW, files: { ...bigFiles(6), 'a.txt': 'a', 'd/b.txt': 'b' } });
    await writeBundle(dataRoot, { name: HELD, files: bigFiles(2), hooks: { onBackup: 'while [ ! -f go ]; do sleep 0.05; done' } });
    const taskQueue = uniqueTaskQueue('json');
    configureTool(taskQueue);
    const passwordFile = path.join(root, 'repo-password');
    await writeFile(passwordFile, 'json-contract', { mode: 0o600 });
    const env = {
      TEMPORAL_ADDRESS: temporalAddress(),
      OHBACKUP_TASK_QUEUE: taskQueue,
      OHBACKUP_STATE_DIR: path.join(root, 'state'),
      RESTIC_PASSWORD_FILE: passwordFile,
    };
    const noRestic = await resticMissing();
    if (noRestic) console.warn(`--json contract: the repository cases are skipped: ${noRestic}`);
    const covered = new Set<string>();
    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      // The slow backup: status lines while it runs, then its summary, each line JSON of its schema.
      const set = path.join(root, 'set');
      const slow = spawnCli(CLI, ['backup', '--out', set, '--rate', '2', '--json', SLOW], env);
      await slow.waitFor(/"messageType":"status"[^\n]*"bytesDone":[1-9]/, slow.out);
      expect(await slow.exited, slow.err()).toBe(0);
      const lines = checkJsonOutput('backup', slow.out());
      const status = lines.filter((l) => l.messageType === 'status');
      expect(status.length).toBeGreaterThan(1);
      // Like restic's: percent done and seconds remaining once some of it is done.
      expect(status.some((l) => typeof l.percentDone === 'number' && l.percentDone > 0 && typeof l.secondsRemaining === 'number')).toBe(true);
      expect(lines.at(-1)).toMatchObject({ messageType: 'summary', outcome: 'done', bundles: [{ bundleName: SLOW, state: 'done' }] });
      const summary = lines.at(-1) as { sessionId: string; bundles: Array<{ entries: number; dataBytes: number; setFiles: number }> };
      // 8 files and 1 folder; the data bytes are the files' bytes, not the set files'.
      expect(summary.bundles[0]).toMatchObject({ entries: 9, dataBytes: 6 * (2 * 1024 * 1024 + 1) + 2 });
      expect(summary.bundles[0]!.setFiles).toBeGreaterThanOrEqual(7);

      // A session held running: its bundle waits in its backup hook.
      const rec = new Recorder();
      const held = new backup.SessionBackup(rec.callbacks, { maxConcurrentBundles: 1 });
      await held.appendBundles([HELD]);
      await rec.until((c) => c.some((x) => x.cb === 'onBundleBegin'));
      const ctx: Ctx = {
        root,
        dataRoot,
        set,
        ended: summary.sessionId,
        running: held.sessionId,
        repo: path.join(root, 'repo'),
        noRepo: path.join(root, 'no-repo'),
      };

      for (const c of REGISTRY) {
        if (c.restic && noRestic) continue;
        // Its hook lets the held bundle go on only now; paused (rate 0), it hands nothing over, so it is still running to be cancelled.
        if (c.command === 'cancel' && c.exit === 0) await writeFile(path.join(dataRoot, HELD, 'go'), '');
        const args = [...c.args(ctx), '--json'];
        const r = await runCli(CLI, args, env);
        const what = `ohbackup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`;
        expect(r.code, what).toBe(c.exit);
        const out = checkJsonOutput(c.command, r.stdout);
        const last = out.at(-1)!;
        expect(last.messageType, what).toBe(c.line);
        if (c.line === 'error') expect(last.exitCode, what).toBe(c.exit);
        covered.add(`${c.command} ${c.line}`);
        // A scheduled run's summary has its elapsed time; in words, a totals line with its throughput.
        if (c.command === 'schedule trigger' && c.exit === 0) {
          expect((last.run as { summary: { elapsedMs: number } }).summary.elapsedMs, what).toBeGreaterThan(0);
          const words = await runCli(CLI, c.args(ctx), env);
          expect(words.code, words.stderr).toBe(0);
          expect(words.stdout).toMatch(/^Total {8}.* set files handed over, .* in \d[\d.]* (ms|s), [\d.]+ (B|KiB|MiB)\/s$/m);
        }
        // A paused bundle says so in status.
        if (c.command === 'rate' && c.exit === 0) {
          const s = await runCli(CLI, ['status', ctx.running], env);
          expect(s.stdout).toMatch(new RegExp(`${HELD.replace(/\./g, '\\.')} +paused \\(rate 0\\)`));
          const j = await runCli(CLI, ['status', ctx.running, '--json'], env);
          expect(checkJsonOutput('status', j.stdout).at(-1)).toMatchObject({ bundles: [{ bundleName: HELD, state: 'running', sendRate: 0 }] });
        }
      }
      await expect(held.release()).rejects.toMatchObject({ code: 13900001 });
    });
    // Every published schema has a success and an error case above (those of restic's only where it runs).
    const resticOnly = (command: string, line: string) => REGISTRY.every((c) => c.command !== command || c.line !== line || c.restic);
    for (const command of Object.keys(COMMAND_SCHEMAS)) {
      for (const line of ['summary', 'error'])
        if (!(noRestic && resticOnly(command, line)) && !(line === 'summary' && FLEET_SUMMARIES.includes(command)))
          expect(covered, command).toContain(`${command} ${line}`);
    }
  });
});
