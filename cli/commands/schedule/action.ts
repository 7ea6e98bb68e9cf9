/** What the schedule subcommands share: the ID rule, the help footer, and the wrapper that prints a result or maps a failure. */
import type { Command } from 'commander';
import { DEFAULT_TEMPORAL_ADDRESS } from '../../../config/env.js';
import { temporalTarget } from '../../../config/temporalConfig.js';
import { closeConnection } from '../../../client/connection.js';
import { toBusinessError } from '../../../client/failures.js';
import { isConnectFailure, unreachableMessage } from '../../../client/runs/setup.js';
import { ScheduleError } from '../../../client/schedules.js';
import { printJson, printJsonError } from '../../output/json.js';
import { EXIT, usageError } from '../../shared.js';

/** Schedule IDs end up in workflow IDs and UI links: keep them plain. */
const SCHEDULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export const CONNECTION_HELP = `
Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*.
Exit codes: 0 done; 1 failed (no such schedule, it already exists, the service is unreachable); 2 wrong usage.`;

/**
 * Runs one schedule operation: prints its result (--json: `toJson(r)` as the
 * summary line of `schedule <name>`), maps its failures to exit codes, and closes the connection.
 */
export async function scheduleAction<T>(
  cmd: Command,
  json: boolean | undefined,
  fn: () => Promise<T>,
  print: (r: T) => string,
  toJson: (r: T) => Record<string, unknown>,
  exitCode: (r: T) => number = () => EXIT.ok,
): Promise<void> {
  let usage: string | undefined;
  try {
    const r = await fn();
    if (json) printJson(`schedule ${cmd.name()}`, toJson(r));
    else console.log(print(r));
    process.exitCode = exitCode(r);
  } catch (err) {
    if (err instanceof ScheduleError && err.kind === 'invalid') usage = err.message;
    else {
      process.exitCode = EXIT.failed;
      const e =
        err instanceof ScheduleError
          ? { code: `ohbackup.schedule.${err.kind}`, message: err.message }
          : isConnectFailure(err)
            ? {
                code: 'ohbackup.unreachable',
                message: unreachableMessage(temporalTarget().connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS, (err as Error).message),
              }
            : toBusinessError(err);
      if (json) printJsonError(e, EXIT.failed);
      else console.error(err instanceof ScheduleError || !isConnectFailure(err) ? `ohbackup schedule: ${e.message}` : e.message);
    }
  } finally {
    await closeConnection();
  }
  if (usage) usageError(cmd, usage);
}

export function checkId(cmd: Command, id: string): void {
  if (!SCHEDULE_ID.test(id)) usageError(cmd, `"${id}" is not a schedule ID: letters, digits, '.', '_' and '-', starting with a letter or digit.`);
}
