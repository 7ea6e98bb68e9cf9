/**
 * Runs restic as a child process: arguments without secrets (the repository
 * and its password are in the child's environment, environment.ts), JSON
 * lines read as they come, the last lines of stderr kept for the error, and
 * restic's exit codes mapped to errors.ts. Nothing here writes into a
 * repository but restic itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import type { Readable } from 'node:stream';
import { resticEnvironment, type RepositoryLocation } from './environment.js';
import { RepositoryError, RepositoryLocked, RepositoryNotFound, ResticFailed, WrongPassword, redactRepository } from './errors.js';

export interface ResticContext {
  /** The restic binary. */
  binary: string;
  location: RepositoryLocation;
  /** Retry a conflicting lock for this long (restic's `--retry-lock`, e.g. "2m"); default none. */
  retryLock?: string;
  /** Told about every restic child started (tests use it to kill one). */
  onChild?: (child: { pid: number; command: string }) => void;
  /** restic's own notices from stderr (retries and the like); default dropped. */
  onNotice?: (line: string) => void;
}

export interface RunOptions {
  /** The restic command and its arguments: never a secret. */
  args: string[];
  /** Each JSON line restic prints on stdout (with `--json`). */
  onJson?: (message: Record<string, unknown>) => void;
  /** Exit codes that are not failures (default [0]). */
  okCodes?: number[];
  signal?: AbortSignal;
  /** The source repository of `restic copy`. */
  from?: RepositoryLocation;
  /** Extra environment for this child (e.g. RESTIC_PROGRESS_FPS). */
  env?: Record<string, string>;
  /** Working folder of the child. */
  cwd?: string;
}

export interface RunResult {
  code: number;
  /** stdout, when no onJson was given. */
  stdout: string;
  /** The last lines restic printed on stderr. */
  stderr: string[];
}

const STDERR_LINES = 40;
/** restic retries a missing S3 bucket for 15 minutes; it will not appear by itself. */
const MISSING_BUCKET = /bucket does not exist|NoSuchBucket/i;

function globalArgs(ctx: ResticContext): string[] {
  return ctx.retryLock ? ['--retry-lock', ctx.retryLock] : [];
}

/** Starts restic; stdout is left to the caller. */
export function spawnRestic(ctx: ResticContext, opts: Omit<RunOptions, 'onJson' | 'okCodes'>): ChildProcess & { stdout: Readable } {
  const env = resticEnvironment(ctx.location, opts.env ?? {}, opts.from);
  const args = [...globalArgs(ctx), ...opts.args];
  const child = spawn(ctx.binary, args, { env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { stdout: Readable };
  if (child.pid !== undefined) ctx.onChild?.({ pid: child.pid, command: opts.args[0] ?? '' });
  return child;
}

/**
 * Watches a child to its end: the stderr tail, the missing-bucket retry loop,
 * the abort signal (SIGINT, which restic handles by cleaning up), and the
 * exit. Resolves with the exit code; rejects when it could not start.
 */
export function watchRestic(
  ctx: ResticContext,
  child: ChildProcess,
  signal?: AbortSignal,
): { done: Promise<{ code: number; signal?: NodeJS.Signals; stderr: string[]; missing: boolean }> } {
  const stderr: string[] = [];
  let missing = false;
  const lines = readline.createInterface({ input: child.stderr!, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (!line.trim()) return;
    stderr.push(line);
    if (stderr.length > STDERR_LINES) stderr.shift();
    if (MISSING_BUCKET.test(line) && !missing) {
      missing = true;
      child.kill('SIGTERM');
    }
    ctx.onNotice?.(line);
  });
  const onAbort = () => child.kill('SIGINT');
  signal?.addEventListener('abort', onAbort, { once: true });
  const done = new Promise<{ code: number; signal?: NodeJS.Signals; stderr: string[]; missing: boolean }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      resolve({ code: code ?? -1, signal: sig ?? undefined, stderr, missing });
    });
  });
  return { done };
}

/** The message restic gave for its exit (its `exit_error` JSON line, else its last stderr lines). */
function resticMessage(stderr: string[]): string {
  for (let i = stderr.length - 1; i >= 0; i--) {
    try {
      const m = JSON.parse(stderr[i]!) as { message_type?: string; message?: string };
      if (m.message_type === 'exit_error' && m.message) return m.message.trim();
    } catch {
      // a text line
    }
  }
  const text = stderr
    .filter((l) => !l.startsWith('{'))
    .slice(-6)
    .join('\n')
    .trim();
  return text || 'no message';
}

/** The error for a restic exit that is not OK, or undefined when it is. */
export function exitError(
  ctx: ResticContext,
  command: string,
  r: { code: number; signal?: NodeJS.Signals; stderr: string[]; missing: boolean },
  okCodes: number[] = [0],
): RepositoryError | undefined {
  if (!r.signal && okCodes.includes(r.code) && !r.missing) return undefined;
  const repo = redactRepository(ctx.location.repository);
  const said = redact(ctx, resticMessage(r.stderr));
  if (r.missing) return new RepositoryNotFound(`There is no repository at ${repo}: its S3 bucket does not exist (restic init creates it).`, 10);
  if (r.signal) return new ResticFailed(`restic ${command} was killed by ${r.signal} (repository ${repo}).`, undefined, r.signal);
  switch (r.code) {
    case 10:
      return new RepositoryNotFound(`There is no repository at ${repo} (create one with restic init / ohbackup repo init): ${said}`, 10);
    case 12:
      return new WrongPassword(`The password does not open the repository at ${repo}.`, 12);
    case 11:
      return new RepositoryLocked(`The repository at ${repo} is locked by another process: ${said}`, 11);
    case 130:
      return new ResticFailed(`restic ${command} was interrupted (repository ${repo}).`, 130);
    default:
      return new ResticFailed(`restic ${command} failed (exit ${r.code}, repository ${repo}): ${said}`, r.code);
  }
}

/** Any occurrence of the raw repository string replaced by its redacted form. */
function redact(ctx: ResticContext, text: string): string {
  const raw = ctx.location.repository;
  const safe = redactRepository(raw);
  return raw === safe ? text : text.split(raw).join(safe);
}

/**
 * Runs `fn` and, when restic finds the repository locked, removes stale locks
 * (restic unlock: only locks of processes that are gone from this host, or
 * older than restic's 30 minutes — a live lock is never removed) and runs it
 * once more. A restic killed mid-run leaves its lock behind; this is how the
 * next run gets past it. Lock conflicts come before restic writes or prints
 * anything, so the retry repeats nothing.
 */
export async function withStaleLocksRemoved<T>(ctx: ResticContext, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof RepositoryLocked)) throw err;
    await runOnce(ctx, { args: ['unlock'] });
    return fn();
  }
}

/** Runs restic to its end; throws the mapped error unless the exit code is OK. */
export async function runRestic(ctx: ResticContext, opts: RunOptions): Promise<RunResult> {
  return withStaleLocksRemoved(ctx, () => runOnce(ctx, opts));
}

async function runOnce(ctx: ResticContext, opts: RunOptions): Promise<RunResult> {
  const child = spawnRestic(ctx, opts);
  const watched = watchRestic(ctx, child, opts.signal);
  let stdout = '';
  let parseError: Error | undefined;
  const out = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  out.on('line', (line) => {
    if (!opts.onJson) {
      stdout += `${line}\n`;
      return;
    }
    if (!line.startsWith('{')) return; // text restic prints beside its JSON (prune, for one)
    try {
      opts.onJson(JSON.parse(line) as Record<string, unknown>);
    } catch (err) {
      parseError ??= err as Error;
    }
  });
  const outClosed = new Promise<void>((resolve) => out.on('close', resolve));
  const r = await watched.done;
  await outClosed;
  const err = exitError(ctx, opts.args[0] ?? '', r, opts.okCodes);
  if (err) throw err;
  if (parseError) throw parseError;
  return { code: r.code, stdout, stderr: r.stderr };
}
