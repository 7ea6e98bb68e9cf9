/**
 * How a worker writes its log: one line per entry on stderr, as text
 * (`time LEVEL message key=value ...`) or as one JSON object, for people and
 * for log shippers. Errors are their message, not a multi-line stack, unless
 * the level is DEBUG or TRACE.
 */
import { DefaultLogger, type LogEntry, type LogLevel, type LogMetadata } from '@temporalio/worker';

export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

/** What the SDK adds to every workflow and activity entry that says nothing to an operator (JSON keeps them). */
const TEXT_NOISE = new Set(['sdkComponent', 'namespace', 'runId', 'taskQueue', 'workflowType', 'isLocal', 'taskToken']);

/** The log line writer for `format`; `verbose` (DEBUG, TRACE) keeps error stacks. */
export function logWriter(format: LogFormat, verbose: boolean, write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)) {
  return (entry: LogEntry): void => {
    const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
    const meta = Object.entries(entry.meta ?? {}).map(([k, v]) => [k, plain(v, verbose)] as const);
    if (format === 'json') {
      write(JSON.stringify({ time, level: entry.level, message: oneLine(entry.message, verbose), ...Object.fromEntries(meta) }));
      return;
    }
    const fields = meta.filter(([k, v]) => !TEXT_NOISE.has(k) && v !== undefined).map(([k, v]) => `${k}=${textValue(v)}`);
    write([time, entry.level.padEnd(5), oneLine(entry.message, verbose), ...fields].join(' '));
  };
}

/** OHBACKUP_LOG_FORMAT (or --log-format): text or json; anything else is refused, naming the setting. */
export function parseLogFormat(value: string | undefined, setting = 'OHBACKUP_LOG_FORMAT'): LogFormat {
  if (value === undefined || value === '') return 'text';
  const format = LOG_FORMATS.find((f) => f === value.toLowerCase());
  if (!format) throw new TypeError(`${setting} must be "text" or "json" (got "${value}")`);
  return format;
}

export function isVerbose(level: LogLevel): boolean {
  return level === 'DEBUG' || level === 'TRACE';
}

function oneLine(text: string, verbose: boolean): string {
  return verbose ? text : text.split('\n')[0]!;
}

/** A metadata value as plain data: an Error as its message (and, verbose, its stack and cause). */
function plain(value: unknown, verbose: boolean): unknown {
  if (value instanceof Error) {
    const cause = value.cause instanceof Error ? `: ${value.cause.message.split('\n')[0]}` : '';
    return verbose ? { name: value.name, message: value.message, stack: value.stack } : `${value.name}: ${value.message.split('\n')[0]}${cause}`;
  }
  if (typeof value === 'bigint') return String(value);
  return value;
}

function textValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** The bundle children: a failed one is an outcome the session reports (its "bundle ended" line), not a warning. */
const BUNDLE_WORKFLOWS = new Set(['bundleBackupWorkflow', 'bundleRestoreWorkflow']);

/** The worker's logger: `format` lines, and the SDK's "Workflow failed" of a bundle child at INFO, not WARN. */
export class WorkerLogger extends DefaultLogger {
  constructor(level: LogLevel, format: LogFormat) {
    super(level, logWriter(format, isVerbose(level)));
  }

  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    const bundleFailed = level === 'WARN' && message === 'Workflow failed' && BUNDLE_WORKFLOWS.has(String(meta?.workflowType));
    super.log(bundleFailed ? 'INFO' : level, message, meta);
  }
}
