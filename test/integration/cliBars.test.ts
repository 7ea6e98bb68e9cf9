/**
 * The progress bars in a real terminal of 80 columns (a pseudo-terminal from
 * util-linux `script`): every bundle's bar keeps its state and size visible,
 * a long bundle name is cut instead, no bar line is wider than the terminal,
 * and the session's ID and UI link are printed as it starts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cliJson.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { bundleWorkflowId } from '../../common/session.js';
import { findRestic } from '../../engine/repository/index.js';
import { temporalAddress, testClient, uniqueTaskQueue, until, withWorker } from '../helpers/temporal.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Runs `command` in a pseudo-terminal of `cols` columns: everything the terminal receives, a wait on it, and the exit code. */
function inTerminal(command: string, cols: number, env: Record<string, string>) {
  const child = spawn('script', ['-q', '-e', '-c', `stty cols ${cols} rows 40; ${command}`, '/dev/null'], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let screen = '';
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  child.stdout.on('data', (d: Buffer) => ((screen += d.toString()), wake()));
  child.stderr.on('data', (d: Buffer) => ((screen += d.toString()), wake()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => (resolve(code), wake())));
  const waitFor = async (re: RegExp): Promise<RegExpMatchArray> => {
    for (;;) {
      const m = screen.replace(ANSI, '\n').match(re);
      if (m) return m;
      if (child.exitCode !== null) throw new Error(`exited before ${re}:\n${screen}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  /** Keys typed at the terminal (\x03: Ctrl-C). */
  const type = (keys: string) => child.stdin.write(keys);
  return { exited, waitFor, type, screen: () => screen };
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

describe('progress bars in an 80-column terminal', () => {
  it('show state and size of every bundle, never wider than the terminal', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-bars-'));
    const dataRoot = path.join(root, 'device');
    const names = ['com.example.an.extremely.long.bundle.name.for.the.bars', 'com.bars.two', 'com.bars.three'];
    // Big files are handed over one each, 1/s here: com.bars.two's 8 keep it running while another tool starts and pauses it.
    for (const name of names) await writeBundle(dataRoot, { name, files: { ...bigFiles(name === 'com.bars.two' ? 8 : 2), 'a.txt': name } });
    const taskQueue = uniqueTaskQueue('bars');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: path.join(root, 'state') };
    const out = path.join(root, 'set');
    const run = await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const t = inTerminal(`exec ${quote(process.execPath)} ${quote(CLI)} backup --out ${quote(out)} --rate 1 ${names.join(' ')}`, 80, env);
      const sessionId = (await t.waitFor(/Session (ohbackup-backup-\S+): backing up/))[1]!;
      // Paused by another tool: its bar says so, state and size in place; then it goes on.
      await t.waitFor(/com\.bars\.two +running/);
      const paused = await runCli(CLI, ['rate', sessionId, 'com.bars.two', '0'], env);
      expect(paused.stdout).toContain('paused (rate 0)');
      await t.waitFor(/ com\.bars\.two +paused \(rate 0\) +\d/);
      // The UI's details of the bundle's workflow say so too.
      const child = (await testClient()).workflow.getHandle(bundleWorkflowId(sessionId, 'com.bars.two'));
      await until(async () => {
        const meta = await child.query<{ currentDetails: string }>('__temporal_workflow_metadata');
        return meta.currentDetails.startsWith('paused (rate 0)') ? true : undefined;
      }, 'the paused details');
      // And the session's own details list it as paused.
      const session = (await testClient()).workflow.getHandle(sessionId);
      await until(async () => {
        const meta = await session.query<{ currentDetails: string }>('__temporal_workflow_metadata');
        return meta.currentDetails.includes('`com.bars.two`: paused (rate 0)') ? true : undefined;
      }, "the session's paused details");
      for (const name of names) expect((await runCli(CLI, ['rate', sessionId, name, '800'], env)).code).toBeLessThanOrEqual(1);
      return { code: await t.exited, screen: t.screen() };
    });
    const segments = run.screen.replace(ANSI, '\n').split(/\r\n|\r|\n/);
    expect(run.screen).toMatch(/Session (ohbackup-backup-\S+): backing up/);
    expect(run.screen.replace(/\r?\n/g, '')).toMatch(/Temporal UI +http:\/\/\S+ohbackup-backup-/);
    const bars = segments.filter((s) => /\|[█░]+\|/.test(s) || /^ \S.* (running|done|failed)/.test(s));
    expect(bars.length, run.screen).toBeGreaterThan(0);
    for (const line of bars) expect(line.length, line).toBeLessThanOrEqual(80);
    // A running bar with some progress says how long is left.
    expect(
      bars.some((l) => / running .*ETA \d+:\d\d/.test(l)),
      bars.join('\n'),
    ).toBe(true);
    for (const name of names) {
      const shown = name.length > 24 ? `${name.slice(0, 23)}…` : name;
      // The bar's last frame: the bundle's name (cut if long), its state, and its size "x of N".
      const last = bars.filter((l) => l.startsWith(` ${shown}`)).at(-1);
      expect(last, `${name}\n${bars.join('\n')}`).toMatch(/ done +\d+(\.\d+)? (B|KiB|MiB) of \d+(\.\d+)? (B|KiB|MiB)/);
    }
  });

  it("a backup into a repository: the store's own bar after the bundles', state and figures visible, never wider than the terminal", async (ctx) => {
    const missing = await findRestic().then(
      () => undefined,
      (err: Error) => err.message,
    );
    if (missing) {
      console.warn(`the repository bar test is skipped: ${missing}`);
      return ctx.skip();
    }
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-bars-repo-'));
    const dataRoot = path.join(root, 'device');
    const names = ['com.barsrepo.one', 'com.barsrepo.two'];
    for (const name of names) await writeBundle(dataRoot, { name, files: { ...bigFiles(2), 'a.txt': name } });
    const taskQueue = uniqueTaskQueue('bars-repo');
    // No --out and no --repo: the state folder's repository, made on first use.
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: path.join(root, 'state') };
    const run = await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'worker-state') }, async () => {
      const t = inTerminal(`exec ${quote(process.execPath)} ${quote(CLI)} backup ${names.join(' ')}`, 80, env);
      return { code: await t.exited, screen: t.screen() };
    });
    expect(run.code, run.screen).toBe(0);
    const segments = run.screen.replace(ANSI, '\n').split(/\r\n|\r|\n/);
    const store = segments.filter((s) => /^ repository +(storing|done) /.test(s));
    expect(store.length, run.screen).toBeGreaterThan(0);
    for (const line of segments.filter((s) => /^ \S+ +(storing|running|done) /.test(s))) expect(line.length, line).toBeLessThanOrEqual(80);
    // Its last frame: done, with the snapshot it made.
    expect(store.at(-1), run.screen).toMatch(/^ repository +done +snapshot [0-9a-f]{8}: /);
    for (const name of names)
      expect(
        segments.some((s) => new RegExp(`^ ${name.replace(/\./g, '\\.')} +done `).test(s)),
        run.screen,
      ).toBe(true);
    expect(run.screen).toMatch(/Stored +\S/);
  });

  it('survive Ctrl-C: the session is released; on the rendered screen every bar and line once, none wider than the terminal', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-bars-int-'));
    const dataRoot = path.join(root, 'device');
    const names = ['com.barsint.one', 'com.barsint.two'];
    for (const name of names) await writeBundle(dataRoot, { name, files: bigFiles(4) });
    const taskQueue = uniqueTaskQueue('bars-int');
    const env = { TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue, OHBACKUP_STATE_DIR: path.join(root, 'state') };
    const screen = await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      // tmux renders what the terminal shows: rows as a user sees them after every cursor movement.
      const tmux = (...args: string[]) =>
        execFileSync('tmux', ['-L', `ohbackup-bars-${process.pid}`, '-f', '/dev/null', ...args], { env: { ...process.env, ...env } }).toString();
      const command = `${quote(process.execPath)} ${quote(CLI)} backup --out ${quote(path.join(root, 'set'))} --rate 1 ${names.join(' ')}; echo "[exit $?]"; read _`;
      tmux('new-session', '-d', '-x', '80', '-y', '50', command);
      try {
        const rendered = () => tmux('capture-pane', '-p', '-S', '-');
        await until(async () => (/com\.barsint\.one +running +[1-9]/.test(rendered()) ? true : undefined), 'a running bar');
        tmux('send-keys', 'C-c');
        return await until(async () => {
          const r = rendered();
          return /\[exit \d+\]/.test(r) ? r : undefined;
        }, 'the command to end');
      } finally {
        tmux('kill-server');
      }
    });
    expect(screen, screen).toMatch(/\[exit 130\]/);
    const rows = screen.split('\n');
    const count = (re: RegExp) => rows.filter((r) => re.test(r)).length;
    expect(count(/Interrupted: releasing the session/), screen).toBe(1);
    expect(count(/^Interrupted: the set is incomplete\./), screen).toBe(1);
    expect(count(/^bundle +state +entries/), screen).toBe(1);
    for (const name of names) expect(count(new RegExp(`^ ${name.replace(/\./g, '\\.')} +\\S`)), screen).toBe(1);
    for (const row of rows) expect(row.length, row).toBeLessThanOrEqual(80);
  });
});
