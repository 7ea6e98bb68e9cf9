/**
 * Runs a bundle's hook command (bundle.json `extension`, api.md §7) with
 * /bin/sh in the bundle's folder. The hook gets a small, fixed environment —
 * never the worker's or the tool's secrets — its input on stdin, and runs in a
 * process group of its own, which is killed when the work is cancelled, when
 * its time is up, when the hook exits (anything it left running goes too),
 * and when the worker dies (a watchdog in the group waits for the worker's end
 * of a pipe to close). Output is read to the end but kept only up to a cap,
 * so a chatty hook neither blocks nor costs memory.
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

/** The hook's answer travels in Temporal payloads (2 MiB at most): its JSON encoding is kept within this. */
export const STDOUT_CAP = 1024 * 1024;
const STDERR_CAP = 64 * 1024;

/**
 * Runs the command ($1) as the group leader, with a watchdog beside it that
 * kills the whole group (`kill -9 0`) once fd 3 — a pipe whose other end only
 * the worker holds — reaches end-of-file: the worker closed it after the hook
 * exited, or the worker died.
 */
const WRAPPER = '(exec </dev/null >/dev/null 2>&1; read _ <&3; kill -9 0) & exec 3<&-; exec /bin/sh -c "$1"';

export async function runHook(opts: HookOptions): Promise<HookRun> {
  const started = Date.now();
  const child = spawn('/bin/sh', ['-c', WRAPPER, 'ohbackup-hook', opts.command], {
    cwd: opts.bundleRoot,
    // A new process group, so a timeout or cancel stops everything the hook started.
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
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
  const watchdog = child.stdio[3]!;
  watchdog.on('error', () => undefined);
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
    // Whatever escaped the group may hold the pipes: stop waiting for them.
    child.stdout.destroy();
    child.stderr.destroy();
  };
  // The hook is over: the watchdog sees end-of-file and clears the group of anything left running.
  child.once('exit', () => watchdog.destroy());
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
    const raw = out.text();
    const stdout = capJson(raw, STDOUT_CAP);
    if (stdout.length < raw.length) truncated = true;
    return { exitCode, signal, stdout, stderr: err.text(), durationMs: Date.now() - started, truncated, timedOut };
  } finally {
    clearTimeout(timer);
    clearInterval(tick);
    opts.signal?.removeEventListener('abort', killGroup);
  }
}

/**
 * The longest prefix of `text` whose JSON encoding (as Temporal's payload
 * converter writes it, UTF-8) fits in `cap` bytes: control characters take up
 * to 6 bytes and invalid UTF-8 output (decoded as U+FFFD) 3, so a byte cap on
 * the raw output alone does not bound the payload.
 */
export function capJson(text: string, cap: number): string {
  let size = 2; // the quotes
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let n: number;
    if (c === 0x22 || c === 0x5c || c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d) n = 2;
    else if (c < 0x20) n = 6;
    else if (c < 0x80) n = 1;
    else if (c < 0x800) n = 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      if (size + 4 > cap) return text.slice(0, i);
      size += 4;
      i++;
      continue;
    } else if (c >= 0xd800 && c <= 0xdfff)
      n = 6; // a lone surrogate is escaped
    else n = 3;
    if (size + n > cap) return text.slice(0, i);
    size += n;
  }
  return text;
}
