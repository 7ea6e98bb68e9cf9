/** What the commands share: option parsers, exit codes, plain-text tables and sizes, signal handling. */
import { statSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { DeviceIdSchema } from '../../common/deviceQueue.js';
import { readSettings } from '../../config/env.js';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  partial: 3,
  interrupted: 130,
} as const;

/** A wrong use of a command found after parsing (e.g. a missing data root): message + exit 2. */
export function usageError(cmd: Command, message: string): never {
  cmd.error(`error: ${message}`, { exitCode: EXIT.usage, code: 'ohbackup.usage' });
}

export function parseIntOption(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(max === Number.MAX_SAFE_INTEGER ? `expected a whole number, at least ${min}.` : `expected a whole number from ${min} to ${max}.`);
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

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A plain table: columns padded to their widest cell; `right` columns aligned right (numbers). */
export function formatTable(header: string[], rows: string[][], right: number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/**
 * Calls `onFirst` on the first SIGINT/SIGTERM (graceful stop) and `onSecond` on
 * the next one (give up waiting). Returns a function that removes the handlers.
 */
export function onStopSignals(onFirst: (signal: NodeJS.Signals) => void, onSecond: (signal: NodeJS.Signals) => void): () => void {
  let count = 0;
  const handler = (signal: NodeJS.Signals) => (++count === 1 ? onFirst(signal) : onSecond(signal));
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** True when the error says no connection to the Temporal service could be made. */
export function isConnectFailure(err: unknown): boolean {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const { name, message } = e as Error;
    if (name === 'TransportError' || /transport|connect|unavailable|ECONNREFUSED|deadline/i.test(String(message))) return true;
  }
  return false;
}

export function unreachableMessage(address: string, detail: string): string {
  return (
    `Cannot reach the Temporal service at ${address} (${detail.split('\n')[0]}).\n` +
    'Point ohbackup at a running Temporal service with TEMPORAL_ADDRESS=host:port (and TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* if it needs them),\n' +
    'or start a local one with its worker: `ohbackup dev --data-root DIR`.'
  );
}
