/**
 * Runs a bundle's hook command (bundle.json `extension`, api.md §7) with
 * /bin/sh in the bundle's folder. The hook gets a small, fixed environment —
 * never the worker's or the tool's secrets — its input on stdin, and is killed
 * (its whole process group) when the work is cancelled or its time is up.
 * Output is kept up to a cap so a chatty hook cannot exhaust memory.
 */
import { spawn } from 'node:child_process';
import type { HookName } from '../common/device.js';

export interface HookRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** Output beyond the cap was dropped. */
  truncated: boolean;
  timedOut: boolean;
}

export interface HookOptions {
  hook: HookName;
  command: string;
  bundleName: string;
  bundleRoot: string;
  input?: string;
  /** BackupParams.parameters, given to the hook as OHBACKUP_PARAMETERS. */
  parameters?: string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called every second while the hook runs (the activity heartbeats from it). */
  onTick?: () => void;
}

const STDOUT_CAP = 1024 * 1024;
const STDERR_CAP = 64 * 1024;

export async function runHook(opts: HookOptions): Promise<HookRun> {
  const started = Date.now();
  const child = spawn('/bin/sh', ['-c', opts.command], {
    cwd: opts.bundleRoot,
    // A new process group, so a timeout or cancel stops everything the hook started.
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      LANG: 'C.UTF-8',
      OHBACKUP_BUNDLE: opts.bundleName,
      OHBACKUP_HOOK: opts.hook,
      OHBACKUP_BUNDLE_ROOT: opts.bundleRoot,
      ...(opts.parameters ? { OHBACKUP_PARAMETERS: opts.parameters } : {}),
    },
  });
  let truncated = false;
  const collect = (cap: number) => {
    const chunks: Buffer[] = [];
    let size = 0;
    return {
      add(d: Buffer) {
        if (size >= cap) return void (truncated = true);
        const part = d.subarray(0, cap - size);
        if (part.length < d.length) truncated = true;
        chunks.push(part);
        size += part.length;
      },
      text: () => Buffer.concat(chunks).toString('utf8'),
    };
  };
  const out = collect(STDOUT_CAP);
  const err = collect(STDERR_CAP);
  child.stdout.on('data', out.add);
  child.stderr.on('data', err.add);
  child.stdin.on('error', () => undefined); // a hook that ignores its input may close stdin early
  child.stdin.end(opts.input ?? '');

  let timedOut = false;
  const killGroup = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, opts.timeoutMs);
  const tick = setInterval(() => opts.onTick?.(), 1000);
  opts.signal?.addEventListener('abort', killGroup, { once: true });
  try {
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, sig) => resolve([code, sig]));
    });
    return { exitCode, signal, stdout: out.text(), stderr: err.text(), durationMs: Date.now() - started, truncated, timedOut };
  } finally {
    clearTimeout(timer);
    clearInterval(tick);
    opts.signal?.removeEventListener('abort', killGroup);
  }
}
