/**
 * What the commands share: option parsers, exit codes, signal handling, and
 * runCommand, the one skeleton of a command that runs a whole backup or restore.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { DeviceIdSchema } from '../common/deviceQueue.js';
import { readSettings } from '../config/env.js';
import { MAX_TIMEOUT_MS } from '../common/rules.js';
import type { RunOutcome } from '../common/rules.js';
import { closeConnection } from '../client/connection.js';
import { toBusinessError } from '../client/failures.js';
import { SetupError } from '../client/runs/setup.js';
import { printJson, printJsonError } from './output/json.js';
import { progressReporter, type ProgressColumns, type ProgressEvent, type RateEvent } from './output/progress.js';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  partial: 3,
  interrupted: 130,
} as const;

/** The exit code of a run's outcome, or of wrong usage. */
export function exitCodeFor(outcome: RunOutcome | 'usage'): number {
  return EXIT[outcome === 'done' ? 'ok' : outcome];
}

/** A wrong use of a command found after parsing (e.g. a missing data root): message + exit 2. */
export function usageError(cmd: Command, message: string): never {
  cmd.error(`error: ${message}`, { exitCode: EXIT.usage, code: 'ohbackup.usage' });
}

export function parseIntOption(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        max === Number.MAX_SAFE_INTEGER ? `expected a whole number, at least ${min}.` : `expected a whole number from ${min} to ${max}.`,
      );
    }
    return n;
  };
}

export const parsePort = parseIntOption(0, 65535);

/** `--device ID`: a device ID (common/deviceQueue.ts). */
export function parseDeviceId(value: string): string {
  const r = DeviceIdSchema.safeParse(value);
  if (!r.success) throw new InvalidArgumentError(`"${value}" is not a device ID: ${r.error.issues[0]?.message}.`);
  return value;
}

export function parsePositiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number greater than 0.');
  return n;
}

/** `--tool-timeout` on the commands that run a session (its help line, once). */
export const TOOL_TIMEOUT_HELP =
  'how long the session waits for this command once it is gone (killed, its terminal closed) before it ends by itself and frees its bundles, e.g. 30s, 5m (1s to 4h; default 5m)';

/** A duration: a number with a unit, ms, s, m or h (`30s`, `5m`, `1.5h`); a bare number is seconds. 1 s to 4 h. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(value.trim());
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  const ms = m ? Math.round(Number(m[1]) * unit[(m[2] ?? 's') as keyof typeof unit]) : NaN;
  if (!(ms >= 1000 && ms <= MAX_TIMEOUT_MS)) throw new InvalidArgumentError('expected a duration from 1s to 4h, like 30s, 5m or 1h.');
  return ms;
}

/** The device's data root: the option, else OHBACKUP_DATA_ROOT; it must be an existing folder. */
export function requireDataRoot(cmd: Command, option: string | undefined): string {
  const dataRoot = option ? path.resolve(option) : readSettings().dataRoot;
  if (!dataRoot) {
    usageError(cmd, 'no device data root: pass --data-root DIR or set OHBACKUP_DATA_ROOT (make a sample one with `ohbackup sample-device DIR`).');
  }
  if (!statSync(dataRoot, { throwIfNoEntry: false })?.isDirectory()) {
    usageError(cmd, `the data root ${dataRoot} is not a folder (make a sample device there with \`ohbackup sample-device ${dataRoot}\`).`);
  }
  return dataRoot;
}

/** A graceful stop: Ctrl-C, a kill, and a closed terminal (SIGHUP), which would otherwise end the process without releasing its session. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Calls `onFirst` on the first SIGINT/SIGTERM/SIGHUP (graceful stop) and `onSecond` on
 * the next one (give up waiting). Returns a function that removes the handlers.
 */
export function onStopSignals(onFirst: (signal: NodeJS.Signals) => void, onSecond: (signal: NodeJS.Signals) => void): () => void {
  let count = 0;
  const handler = (signal: NodeJS.Signals) => {
    // A closed terminal fails writes to it: they must not end the process before its session is released.
    if (signal === 'SIGHUP') for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
    return ++count === 1 ? onFirst(signal) : onSecond(signal);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, handler);
  return () => {
    for (const signal of STOP_SIGNALS) process.off(signal, handler);
  };
}

export interface CommandRun<E extends ProgressEvent, R extends { outcome: RunOutcome }> {
  /** The progress display (output/progress.ts). */
  progress: ProgressColumns<E>;
  /** --json: stream status lines, then print `toJson(result)` as the summary line of `jsonKind` (output/json.ts), instead of the table. */
  json?: boolean;
  jsonKind: string;
  /** The summary without the run's `outcome` and `elapsedMs`: a query answered by a device prints what the local command prints. */
  answerOnly?: boolean;
  toJson(result: R, elapsedMs: number): Record<string, unknown>;
  format(result: R, elapsedMs: number): string;
  /** How an unexpected failure starts its message, e.g. "Backup failed". */
  failure: string;
}

/**
 * Runs a whole backup or restore as a command: progress on stderr, the first
 * SIGINT/SIGTERM aborts the run (which releases its session) and the second
 * exits; the result as JSON or a table on stdout, and its exit code; a
 * SetupError as wrong usage or a plain message; the connection closed.
 */
export async function runCommand<E extends ProgressEvent, R extends { outcome: RunOutcome }>(
  cmd: Command,
  how: CommandRun<E, R>,
  body: (io: { onProgress: (event: E | RateEvent) => void; signal: AbortSignal }) => Promise<R>,
): Promise<void> {
  const started = Date.now();
  const reporter = progressReporter(how.progress, { json: how.json ? how.jsonKind : undefined });
  const abort = new AbortController();
  const removeHandlers = onStopSignals(
    () => abort.abort(),
    () => process.exit(EXIT.interrupted),
  );
  let setupError: SetupError | undefined;
  try {
    const result = await body({ onProgress: (e) => reporter.onProgress(e as E), signal: abort.signal });
    reporter.stop();
    const elapsedMs = Date.now() - started;
    if (how.json)
      printJson(how.jsonKind, how.answerOnly ? how.toJson(result, elapsedMs) : { ...how.toJson(result, elapsedMs), outcome: result.outcome, elapsedMs });
    else console.log(`\n${how.format(result, elapsedMs)}`);
    process.exitCode = exitCodeFor(result.outcome);
  } catch (err) {
    reporter.stop();
    if (err instanceof SetupError) setupError = err;
    else {
      const e = toBusinessError(err);
      if (how.json) printJsonError(e, EXIT.failed);
      else console.error(`${how.failure}: ${e.message}`);
      process.exitCode = EXIT.failed;
    }
  } finally {
    removeHandlers();
    await closeConnection();
  }
  if (setupError?.kind === 'usage') usageError(cmd, setupError.message);
  if (setupError) {
    if (how.json) printJsonError({ code: `ohbackup.${setupError.kind}`, message: setupError.message }, exitCodeFor(setupError.kind));
    else console.error(setupError.message);
    process.exitCode = exitCodeFor(setupError.kind);
  }
}
