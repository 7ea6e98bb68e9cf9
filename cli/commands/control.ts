/** `ohbackup status|cancel|timer|rate|release <session-id> …`: steer any session by its ID. */
import { InvalidArgumentError, type Command } from 'commander';
import { backup } from '../../client/index.js';
import { SessionControl, listSessions } from '../../client/sessions/control.js';
import { sessionUiUrl } from '../../client/runs/setup.js';
import { temporalTarget } from '../../config/temporalConfig.js';
import { formatOutcomes, formatTable } from '../output/results.js';
import { EXIT, parseIntOption } from '../shared.js';
import { BundleNameArg } from '../../client/validate.js';

const HELP_FOOTER = `
Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*.
Exit codes: 0 done; 1 failed (no such session, the session has ended (it says how), the bundle is not running, the service is unreachable); 2 wrong usage.`;

/** A bundle name argument: wrong usage (exit 2) when it cannot be one. */
function parseBundle(value: string): string {
  if (!BundleNameArg.safeParse(value).success) throw new InvalidArgumentError('expected a bundle name like com.example.notes.');
  return value;
}

const KINDS = ['backup', 'restore', 'incremental'];
function parseKind(value: string): string {
  if (!KINDS.includes(value)) throw new InvalidArgumentError(`expected one of ${KINDS.join(', ')}.`);
  return value;
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
    .summary('list ohbackup sessions (newest first), from Temporal visibility')
    .description(
      'List ohbackup sessions, newest first, from Temporal visibility (found by the search attributes OhbackupKind and OhbackupBundles, ' +
        'which `ohbackup dev` registers). A session that has just started can take a moment to appear.',
    )
    .option('--running', 'only sessions still running (default: every status)')
    .option('--bundle <name>', 'only sessions that include this bundle (default: any)', parseBundle)
    .option('--kind <kind>', 'only sessions of this kind: backup, restore or incremental (default: every kind)', parseKind)
    .option('--limit <n>', 'at most this many, 1 to 10000', parseIntOption(1, 10_000), 20)
    .option('--json', 'print one JSON array (sessionId, kind, status, startTime, bundles)')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup sessions --running\n  $ ohbackup sessions --bundle com.example.notes --kind incremental --json\n${HELP_FOOTER}`,
    )
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
    .summary("show a session's state and every bundle's outcome so far")
    .description(
      "Show a session's Temporal status (RUNNING, COMPLETED, ...) and every bundle's state, files, bytes and error so far, with the session's UI link.",
    )
    .argument('<session-id>', 'the session (its workflow ID, printed when it started; see `ohbackup sessions`)')
    .option('--json', 'print one JSON object (sessionId, status, startTime, closeTime, bundles)')
    .addHelpText('after', `\nExamples:\n  $ ohbackup status ohbackup-backup-1b2c…\n  $ ohbackup status ohbackup-backup-1b2c… --json\n${HELP_FOOTER}`)
    .action(async (id: string, o: { json?: boolean }) => {
      await act(
        o.json,
        async () => (await SessionControl.of(id)).status(),
        (s) => [`${s.sessionId}: ${s.status}`, formatOutcomes(s.bundles), `Temporal UI: ${sessionUiUrl(temporalTarget().namespace, s.sessionId)}`].join('\n'),
      );
    });

  program
    .command('cancel')
    .description('cancel one bundle of a session: prints 0 (cancelled), 13500011 (not started yet) or 13500012 (not in the session, or ended)')
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .argument('<bundle>', 'the bundle to cancel', parseBundle)
    .option('--json', 'print one JSON object ({"code": ...})')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup cancel ohbackup-backup-1b2c… com.example.notes\n  $ ohbackup cancel ohbackup-backup-1b2c… com.example.notes --json\n${HELP_FOOTER} (exit 1 also for 13500011 and 13500012)`,
    )
    .action(async (id: string, bundle: string, o: { json?: boolean }) => {
      const code = await act(
        o.json,
        async () => ({ code: await (await SessionControl.of(id)).cancel(bundle) }),
        (r) => String(r.code),
      );
      if (code.code !== 0) process.exitCode = EXIT.failed;
    });

  program
    .command('timer')
    .description("re-arm a running bundle's deadline to <ms> from now (0 to 14400000)")
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .argument('<bundle>', 'the running bundle', parseBundle)
    .argument('<ms>', 'the new deadline, ms from now (0 to 14400000; a bundle starts with 900000, 15 minutes)', parseIntOption(0, 14_400_000))
    .option('--json', 'print one JSON object ({"ok": true|false})')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup timer ohbackup-backup-1b2c… com.example.notes 3600000   # one more hour\n  $ ohbackup timer ohbackup-backup-1b2c… com.example.notes 0         # expire it now (13500003)\n${HELP_FOOTER}`,
    )
    .action(async (id: string, bundle: string, ms: number, o: { json?: boolean }) => {
      const r = await act(
        o.json,
        async () => ({ ok: await (await SessionControl.of(id)).updateTimer(bundle, ms) }),
        (x) => (x.ok ? 'true' : 'false: that bundle is not running'),
      );
      if (!r.ok) process.exitCode = EXIT.failed;
    });

  program
    .command('rate')
    .description('set the files per second handed over for a running bundle (0 pauses; above 800 means 800)')
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .argument('<bundle>', 'the running bundle', parseBundle)
    .argument('<per-second>', 'the new send rate in files per second (a bundle starts with 60; 0 pauses; above 800 means 800)', parseIntOption(0))
    .option('--json', 'print one JSON object ({"ok": true|false})')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup rate ohbackup-backup-1b2c… com.example.notes 0     # pause the hand-over\n  $ ohbackup rate ohbackup-backup-1b2c… com.example.notes 800   # full speed\n${HELP_FOOTER}`,
    )
    .action(async (id: string, bundle: string, rate: number, o: { json?: boolean }) => {
      const r = await act(
        o.json,
        async () => ({ ok: await (await SessionControl.of(id)).updateSendRate(bundle, rate) }),
        (x) => (x.ok ? 'true' : 'false: that bundle is not running'),
      );
      if (!r.ok) process.exitCode = EXIT.failed;
    });

  program
    .command('release')
    .description(
      'end a session: stop what still runs, clean its temp data, complete its workflow, free its bundles; prints every outcome (warns when its tool is still attached)',
    )
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .option('--json', 'print one JSON object (sessionId, kind, bundles, trailingEvents)')
    .addHelpText('after', `\nExamples:\n  $ ohbackup release ohbackup-backup-1b2c…\n  $ ohbackup release ohbackup-backup-1b2c… --json\n${HELP_FOOTER}`)
    .action(async (id: string, o: { json?: boolean }) => {
      await act(
        o.json,
        async () => {
          const control = await SessionControl.of(id);
          // Released anyway (the tool may be stuck): the tool, if it is alive, reports "released by another client".
          const ago = await control.toolAttached();
          if (ago !== undefined)
            console.error(
              `warning: the tool of ${id} is still attached (heard from ${Math.round(ago / 1000)} s ago); releasing it anyway: that tool reports "released by another client".`,
            );
          return control.release();
        },
        (r) => formatOutcomes(r.bundles),
      );
    });
}
