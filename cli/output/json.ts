/**
 * The `--json` contract (docs/cli.md, "JSON output"): every command prints JSON
 * Lines on stdout, each object with `schemaVersion` and `messageType`: long
 * commands stream `status` lines, every command ends with one `summary` line
 * (or one `error` line). Absent values are `null`, never missing. The shapes
 * are the zod schemas of output/schemas.ts.
 */

export const SCHEMA_VERSION = 1;

/** Whether this command line asked for JSON: `--json` among the options (before a `--`). */
export function jsonRequested(argv: readonly string[] = process.argv.slice(2)): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** `undefined` as `null`, deeply, so an absent value is a key with null rather than a missing key. */
export function withNulls(value: unknown): unknown {
  if (value === undefined) return null;
  if (Array.isArray(value)) return value.map(withNulls);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withNulls(v)]));
  }
  return value;
}

function line(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(withNulls({ schemaVersion: SCHEMA_VERSION, ...message }))}\n`);
}

/** A command's result: one `summary` line naming the command (`kind`, e.g. "backup", "schedule list"). */
export function printJson(kind: string, value: Record<string, unknown>): void {
  line({ messageType: 'summary', command: kind, ...value });
}

/** A failure under --json: one `error` line on stdout with the code (an API error code is a number, e.g. 13900042; others a string, e.g. "commander.unknownOption"), the message and the exit code. */
export function printJsonError(err: { code: string | number; message: string }, exitCode: number): void {
  line({ messageType: 'error', error: { code: err.code, message: err.message }, exitCode });
}

export interface StatusLine {
  /** 0 to 1; null while the total is unknown. */
  percentDone: number | null;
  bytesDone: number;
  totalBytes: number | null;
  filesDone: number;
  totalFiles: number | null;
  secondsRemaining: number | null;
  /** Bundles ended so far, of how many. */
  bundlesDone: number;
  totalBundles: number;
}

/** At most this often a status line (a few per second, as restic's). */
export const STATUS_INTERVAL_MS = 500;

/**
 * Streams `status` lines of a long command: `update` may be called on every
 * event; a line goes out at most every STATUS_INTERVAL_MS, and `flush` sends
 * the last pending one (before the summary).
 */
export function printJsonProgress(kind: string, interval = STATUS_INTERVAL_MS): { update(status: StatusLine): void; flush(): void } {
  let last = 0;
  let pending: StatusLine | undefined;
  const send = (s: StatusLine) => {
    last = Date.now();
    pending = undefined;
    line({ messageType: 'status', command: kind, ...s });
  };
  return {
    update(status) {
      if (Date.now() - last >= interval) send(status);
      else pending = status;
    },
    flush() {
      if (pending) send(pending);
    },
  };
}
