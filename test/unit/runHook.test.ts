/**
 * Hooks that misbehave: hang past their time limit, are cancelled, crash,
 * leave processes behind, or print megabytes. Nothing of a hook outlives it,
 * and its output never costs more than the cap (nor breaks a payload).
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STDOUT_CAP, capJson, runHook, type HookOptions } from '../../engine/hooks.js';
import { groupMembers, processesWithEnv } from '../helpers/processes.js';

let root: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'runHook-'));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** A hook run in a fresh bundle folder under a unique bundle name (every process of it carries it in its environment). */
async function run(command: string, extra: Partial<HookOptions> = {}) {
  const bundleName = `com.t.hook${randomUUID().slice(0, 8)}`;
  const bundleRoot = path.join(root, bundleName);
  await fsp.mkdir(bundleRoot);
  const result = await runHook({ hook: 'onBackup', command, bundleName, bundleRoot, timeoutMs: 60_000, ...extra });
  return { result, bundleName, bundleRoot };
}

/**
 * Resolves once `alive()` is empty. A killed process closes its pipes just
 * before it is marked dead, so this waits (briefly) for the kernel to finish.
 */
async function gone(alive: () => number[]): Promise<number[]> {
  for (let i = 0; i < 500 && alive().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return alive();
}

const jsonBytes = (s: string) => Buffer.byteLength(JSON.stringify(s));

describe('runHook', () => {
  it('gets its input on stdin, its parameters and a fixed environment, and runs in its bundle folder', async () => {
    const { result, bundleName, bundleRoot } = await run(
      'printf "in:"; cat; echo; echo "$OHBACKUP_BUNDLE $OHBACKUP_HOOK $OHBACKUP_PARAMETERS"; pwd; env | cut -d= -f1 | sort | tr "\\n" " "',
      {
        input: '{"x":1}',
        parameters: 'p=1',
      },
    );
    expect(result).toMatchObject({ exitCode: 0, truncated: false, timedOut: false });
    expect(result.stdout.split('\n').slice(0, 3)).toEqual(['in:{"x":1}', `${bundleName} onBackup p=1`, bundleRoot]);
    // Only what the worker gives, plus what a shell sets for itself.
    const given = ['LANG', 'OHBACKUP_BUNDLE', 'OHBACKUP_BUNDLE_ROOT', 'OHBACKUP_HOOK', 'OHBACKUP_PARAMETERS', 'PATH'];
    const keys = result.stdout.split('\n')[3]!.trim().split(' ');
    expect(keys.filter((k) => !['PWD', 'OLDPWD', 'SHLVL', '_'].includes(k))).toEqual(given);
  });

  it('a hook that hangs is killed at its time limit, with everything it started', async () => {
    const { result, bundleName, bundleRoot } = await run('echo $$ > started; sleep 600 & sleep 600', { timeoutMs: 3000 });
    expect(result).toMatchObject({ timedOut: true, exitCode: null, signal: 'SIGKILL' });
    expect(await gone(() => processesWithEnv('OHBACKUP_BUNDLE', bundleName))).toEqual([]);
    const started = await fsp.readFile(path.join(bundleRoot, 'started'), 'utf8').catch(() => undefined);
    if (started) expect(groupMembers(Number(started))).toEqual([]);
  });

  it('a cancelled hook is killed with everything it started', async () => {
    const bundleName = `com.t.hook${randomUUID().slice(0, 8)}`;
    const bundleRoot = path.join(root, bundleName);
    await fsp.mkdir(bundleRoot);
    execFileSync('mkfifo', [path.join(bundleRoot, 'ready')]);
    const ac = new AbortController();
    const running = runHook({
      hook: 'onBackup',
      command: 'sleep 600 & echo $$ > ready; exec sleep 600',
      bundleName,
      bundleRoot,
      timeoutMs: 600_000,
      signal: ac.signal,
    });
    // Reading the FIFO returns once the hook has written to it: it is running.
    const pgid = Number(await fsp.readFile(path.join(bundleRoot, 'ready'), 'utf8'));
    expect(groupMembers(pgid).length).toBeGreaterThanOrEqual(2);
    ac.abort();
    const result = await running;
    expect(result).toMatchObject({ timedOut: false, exitCode: null, signal: 'SIGKILL' });
    expect(await gone(() => groupMembers(pgid))).toEqual([]);
  });

  it('a hook that crashes reports its exit code or signal and its stderr', async () => {
    const { result } = await run('echo "partial" ; echo "disk on fire" >&2; exit 3');
    expect(result).toMatchObject({ exitCode: 3, signal: null, stdout: 'partial\n', stderr: 'disk on fire\n', timedOut: false });
    const { result: killed } = await run('kill -SEGV $$');
    expect(killed).toMatchObject({ exitCode: null, signal: 'SIGSEGV', timedOut: false });
  });

  it('a hook that exits leaving processes behind does not hold the worker up, and they are killed', async () => {
    // The background sleep keeps stdout open: without the watchdog this would wait 600 s.
    const { result, bundleName } = await run('sleep 600 & echo $!');
    expect(result).toMatchObject({ exitCode: 0, timedOut: false });
    const left = Number(result.stdout.trim());
    expect(left).toBeGreaterThan(0);
    expect(await gone(() => processesWithEnv('OHBACKUP_BUNDLE', bundleName))).toEqual([]);
  });

  it('megabytes on stdout and stderr: read to the end, kept only up to the caps', async () => {
    const { result } = await run('yes 0123456789abcdef | head -c 100000000; head -c 30000000 /dev/zero | tr "\\0" e >&2; echo', { timeoutMs: 120_000 });
    expect(result).toMatchObject({ exitCode: 0, truncated: true, timedOut: false });
    expect(jsonBytes(result.stdout)).toBeLessThanOrEqual(STDOUT_CAP);
    expect(result.stdout.length).toBeGreaterThan(STDOUT_CAP / 2);
    expect(result.stdout.startsWith('0123456789abcdef\n0123456789abcdef\n')).toBe(true);
    expect(result.stderr.length).toBeLessThanOrEqual(64 * 1024);
  });

  it('binary output is capped by its JSON size, so the answer fits a Temporal payload', async () => {
    for (const source of ['/dev/urandom', '/dev/zero']) {
      const { result } = await run(`head -c 3000000 ${source}`);
      expect(result).toMatchObject({ exitCode: 0, truncated: true });
      expect(jsonBytes(result.stdout), source).toBeLessThanOrEqual(STDOUT_CAP);
    }
  });
});

describe('capJson', () => {
  it('keeps the longest prefix whose JSON encoding fits', () => {
    expect(capJson('abc', 5)).toBe('abc');
    expect(capJson('abcd', 5)).toBe('abc');
    expect(capJson('a"b', 5)).toBe('a"');
    expect(capJson('a"b', 4)).toBe('a');
    expect(capJson('\u0000x', 8)).toBe('\u0000');
    expect(capJson('ü€', 7)).toBe('ü€');
    expect(capJson('😀x', 6)).toBe('😀');
    expect(capJson('😀', 5)).toBe('');
    for (const s of ['plain', 'a"\\\n\t\u0001ü€😀\ud800', 'x'.repeat(100)]) {
      for (let cap = 2; cap < 40; cap++) {
        const kept = capJson(s, cap);
        expect(s.startsWith(kept)).toBe(true);
        expect(jsonBytes(kept)).toBeLessThanOrEqual(cap);
        if (kept.length < s.length) expect(jsonBytes(s.slice(0, kept.length + (/[\ud800-\udbff]/.test(s[kept.length]!) ? 2 : 1)))).toBeGreaterThan(cap);
      }
    }
  });
});
