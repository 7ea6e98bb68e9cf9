/** `ohbackup status|cancel|timer|rate|release <session-id> …`: steer any session by its ID. */
import type { Command } from 'commander';
import { backup } from '../index.js';
import { SessionControl, listSessions } from '../sessionControl.js';
import { EXIT, formatBytes, formatTable, parseIntOption } from './shared.js';
import { sessionUiUrl } from './backup.js';
import { temporalTarget } from '../../common/temporalConfig.js';
import type { BundleOutcome } from '../../common/session.js';

function outcomesTable(bundles: BundleOutcome[]): string {
  return formatTable(
    ['bundle', 'state', 'files', 'bytes', 'error'],
    bundles.map((b) => [b.bundleName, b.state, String(b.files), formatBytes(b.bytes), b.error ? `${b.error.code} ${b.error.message}` : '']),
    [2, 3],
  );
}

/** Runs one control action, prints it, and always closes the connection. */
async function act<T>(json: boolean | undefined, fn: () => Promise<T>, print: (r: T) => string): Promise<T> {
  try {
    const r = await fn();
    console.log(json ? JSON.stringify(r) : print(r));
    return r;
  } finally {
    await backup.closeConnection();
  }
}

export function registerControl(program: Command): void {
  program
    .command('sessions')
    .description('list ohbackup sessions (newest first), from Temporal visibility')
    .option('--running', 'only sessions still running')
    .option('--bundle <name>', 'only sessions that include this bundle')
    .option('--kind <kind>', 'only sessions of this kind: backup, restore or incremental')
    .option('--limit <n>', 'at most this many', parseIntOption(1, 10_000), 20)
    .option('--json', 'print one JSON array')
    .addHelpText('after', '\nExamples:\n  $ ohbackup sessions --running\n  $ ohbackup sessions --bundle com.example.notes --json')
    .action(async (o: { running?: boolean; bundle?: string; kind?: string; limit: number; json?: boolean }) => {
      await act(
        o.json,
        async () => listSessions({ running: o.running, bundle: o.bundle, kind: o.kind, limit: o.limit }),
        (rows) =>
          rows.length === 0
            ? 'no sessions'
            : formatTable(
                ['session', 'kind', 'status', 'started', 'bundles'],
                rows.map((r) => [r.sessionId, r.kind ?? '', r.status, r.startTime, r.bundles.join(',')]),
              ),
      );
    });

  program
    .command('status')
    .description("show a session's state and every bundle's outcome so far")
    .argument('<session-id>', 'the session (its workflow ID, printed when it started)')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExample:\n  $ ohbackup status ohbackup-backup-1b2c…')
    .action(async (id: string, o: { json?: boolean }) => {
      await act(o.json, async () => (await SessionControl.of(id)).status(), (s) =>
        [`${s.sessionId}: ${s.status}`, outcomesTable(s.bundles), `Temporal UI: ${sessionUiUrl(temporalTarget().namespace, s.sessionId)}`].join('\n'),
      );
    });

  program
    .command('cancel')
    .description('cancel one bundle of a session: prints 0 (cancelled), 13500011 (not started yet) or 13500012 (not in the session, or ended)')
    .argument('<session-id>', 'the session')
    .argument('<bundle>', 'the bundle to cancel')
    .option('--json', 'print one JSON object')
    .action(async (id: string, bundle: string, o: { json?: boolean }) => {
      const code = await act(o.json, async () => ({ code: await (await SessionControl.of(id)).cancel(bundle) }), (r) => String(r.code));
      if (code.code !== 0) process.exitCode = EXIT.failed;
    });

  program
    .command('timer')
    .description("re-arm a running bundle's deadline to <ms> from now (0 to 14400000)")
    .argument('<session-id>', 'the session')
    .argument('<bundle>', 'the running bundle')
    .argument('<ms>', 'the new deadline, ms from now', parseIntOption(0, 14_400_000))
    .option('--json', 'print one JSON object')
    .action(async (id: string, bundle: string, ms: number, o: { json?: boolean }) => {
      const r = await act(o.json, async () => ({ ok: await (await SessionControl.of(id)).updateTimer(bundle, ms) }), (x) => (x.ok ? 'true' : 'false: that bundle is not running'));
      if (!r.ok) process.exitCode = EXIT.failed;
    });

  program
    .command('rate')
    .description('set the files per second handed over for a running bundle (0 pauses; above 800 means 800)')
    .argument('<session-id>', 'the session')
    .argument('<bundle>', 'the running bundle')
    .argument('<per-second>', 'the new send rate', parseIntOption(0))
    .option('--json', 'print one JSON object')
    .action(async (id: string, bundle: string, rate: number, o: { json?: boolean }) => {
      const r = await act(o.json, async () => ({ ok: await (await SessionControl.of(id)).updateSendRate(bundle, rate) }), (x) => (x.ok ? 'true' : 'false: that bundle is not running'));
      if (!r.ok) process.exitCode = EXIT.failed;
    });

  program
    .command('release')
    .description('end a session: stop what still runs, clean its temp data, complete its workflow; prints every outcome')
    .argument('<session-id>', 'the session')
    .option('--json', 'print one JSON object')
    .action(async (id: string, o: { json?: boolean }) => {
      await act(o.json, async () => (await SessionControl.of(id)).release(), (r) => outcomesTable(r.bundles));
    });
}
