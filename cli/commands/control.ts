/** `ohbackup status|cancel|timer|rate|release <session-id> …`: steer any session by its ID. */
import { InvalidArgumentError, type Command } from 'commander';
import { backup } from '../../client/index.js';
import { SessionControl, listSessions } from '../../client/sessions/control.js';
import { sessionUiUrl } from '../../client/runs/setup.js';
import { temporalTarget } from '../../config/temporalConfig.js';
import { printJson } from '../output/json.js';
import { jsonBundle } from '../output/schemas.js';
import { formatDuration, formatOutcomes, formatTable } from '../output/results.js';
import { EXIT, parseIntOption } from '../shared.js';
import { BundleNameArg } from '../../client/validate.js';
import { clampSendRate } from '../../common/rules.js';

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

/** Runs one control action, prints it (--json: the summary line of `kind`, output/json.ts), and always closes the connection. */
async function act<T>(
  kind: string,
  json: boolean | undefined,
  fn: () => Promise<T>,
  print: (r: T) => string,
  toJson: (r: T) => Record<string, unknown>,
): Promise<T> {
  try {
    const r = await fn();
    if (json) printJson(kind, toJson(r));
    else console.log(print(r));
    return r;
  } finally {
    await backup.closeConnection();
  }
}

/** "com.example.notes in <session>": whom a steering answer is about. */
const about = (id: string, bundle: string) => `${bundle} in ${id}`;

/** A send rate in words: 0 is a pause. */
export const rateText = (rate: number) => (rate === 0 ? 'paused (rate 0)' : `rate ${rate} files/s`);

/** A clock time (UTC, as the session's times) and how far away: "10:42:05 (in 5 min 00 s)". */
function deadlineText(at: Date, ms: number): string {
  return `${at.toISOString().slice(11, 19)} UTC (in ${formatDuration(ms)})`;
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
    .option('--json', 'print the summary line: sessions, each with sessionId, kind, status, startTime, bundles (docs/cli.md, "JSON output")')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup sessions --running\n  $ ohbackup sessions --bundle com.example.notes --kind incremental --json\n${HELP_FOOTER}`,
    )
    .action(async (o: { running?: boolean; bundle?: string; kind?: string; limit: number; json?: boolean }) => {
      await act(
        'sessions',
        o.json,
        async () => listSessions({ running: o.running, bundle: o.bundle, kind: o.kind, limit: o.limit }),
        (rows) =>
          rows.length === 0
            ? 'no sessions'
            : formatTable(
                ['session', 'kind', 'status', 'started', 'bundles'],
                rows.map((r) => [r.sessionId, r.kind ?? '', r.status, r.startTime, r.bundles.join(',')]),
              ),
        (rows) => ({
          sessions: rows.map((r) => ({ sessionId: r.sessionId, kind: r.kind ?? null, status: r.status, startTime: r.startTime, bundles: r.bundles })),
        }),
      );
    });

  program
    .command('status')
    .summary("show a session's state and every bundle's outcome so far")
    .description(
      "Show a session's Temporal status (RUNNING, COMPLETED, ...) and every bundle's state, files, bytes and error so far, with the session's UI link.",
    )
    .argument('<session-id>', 'the session (its workflow ID, printed when it started; see `ohbackup sessions`)')
    .option('--json', 'print the summary line: sessionId, status, startTime, closeTime, uiUrl, bundles with their sendRate (docs/cli.md, "JSON output")')
    .addHelpText('after', `\nExamples:\n  $ ohbackup status ohbackup-backup-1b2c…\n  $ ohbackup status ohbackup-backup-1b2c… --json\n${HELP_FOOTER}`)
    .action(async (id: string, o: { json?: boolean }) => {
      await act(
        'status',
        o.json,
        async () => {
          const control = await SessionControl.of(id);
          const s = await control.status();
          return { ...s, rates: await control.sendRates(s.bundles), uiUrl: sessionUiUrl(temporalTarget().namespace, s.sessionId) };
        },
        (s) => {
          // A running bundle whose rate is 0 is paused: say so where its state is.
          const shown = s.bundles.map((b) => (s.rates.get(b.bundleName) === 0 ? { ...b, state: 'paused (rate 0)' as typeof b.state } : b));
          return [`${s.sessionId}: ${s.status}`, formatOutcomes(shown), `Temporal UI: ${s.uiUrl}`].join('\n');
        },
        (s) => ({
          sessionId: s.sessionId,
          status: s.status,
          startTime: s.startTime ?? null,
          closeTime: s.closeTime ?? null,
          uiUrl: s.uiUrl,
          bundles: s.bundles.map((b) => ({ ...jsonBundle(b, null), sendRate: s.rates.get(b.bundleName) ?? null })),
        }),
      );
    });

  program
    .command('cancel')
    .description(
      'cancel one bundle of a session: says what happened: "cancel requested" (0), not started yet (13500011), or not in the session or ended (13500012)',
    )
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .argument('<bundle>', 'the bundle to cancel', parseBundle)
    .option('--json', 'print the summary line: sessionId, bundleName, code (0, 13500011, 13500012), cancelled, message')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup cancel ohbackup-backup-1b2c… com.example.notes\n  $ ohbackup cancel ohbackup-backup-1b2c… com.example.notes --json\n${HELP_FOOTER} (exit 1 also for 13500011 and 13500012)`,
    )
    .action(async (id: string, bundle: string, o: { json?: boolean }) => {
      const r = await act(
        'cancel',
        o.json,
        async () => {
          const code = await (await SessionControl.of(id)).cancel(bundle);
          const what =
            code === 0
              ? 'cancel requested'
              : code === 13500011
                ? 'not cancelled: it has not started yet'
                : 'not cancelled: it is not in the session, or has ended';
          return { code, message: `${about(id, bundle)}: ${what}${code === 0 ? '' : ` (${code})`}` };
        },
        (x) => x.message,
        (x) => ({ sessionId: id, bundleName: bundle, code: x.code, cancelled: x.code === 0, message: x.message }),
      );
      if (r.code !== 0) process.exitCode = EXIT.failed;
    });

  program
    .command('timer')
    .description("re-arm a running bundle's deadline to <ms> from now (0 to 14400000)")
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .argument('<bundle>', 'the running bundle', parseBundle)
    .argument('<ms>', 'the new deadline, ms from now (0 to 14400000; a bundle starts with 900000, 15 minutes)', parseIntOption(0, 14_400_000))
    .option('--json', 'print the summary line: sessionId, bundleName, ok, timeoutMs, deadline (ISO 8601, null when not running), message')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup timer ohbackup-backup-1b2c… com.example.notes 3600000   # one more hour\n  $ ohbackup timer ohbackup-backup-1b2c… com.example.notes 0         # expire it now (13500003)\n${HELP_FOOTER}`,
    )
    .action(async (id: string, bundle: string, ms: number, o: { json?: boolean }) => {
      const r = await act(
        'timer',
        o.json,
        async () => {
          const ok = await (await SessionControl.of(id)).updateTimer(bundle, ms);
          const at = new Date(Date.now() + ms);
          const what = !ok ? 'not running: its deadline was not moved' : ms === 0 ? 'deadline expired now' : `deadline moved to ${deadlineText(at, ms)}`;
          return { ok, deadline: ok ? at.toISOString() : null, message: `${about(id, bundle)}: ${what}` };
        },
        (x) => x.message,
        (x) => ({ sessionId: id, bundleName: bundle, ok: x.ok, timeoutMs: ms, deadline: x.deadline, message: x.message }),
      );
      if (!r.ok) process.exitCode = EXIT.failed;
    });

  program
    .command('rate')
    .description('set the files per second handed over for a running bundle (0 pauses; above 800 means 800)')
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .argument('<bundle>', 'the running bundle', parseBundle)
    .argument('<per-second>', 'the new send rate in files per second (a bundle starts with 60; 0 pauses; above 800 means 800)', parseIntOption(0))
    .option('--json', 'print the summary line: sessionId, bundleName, ok, sendRate (as set: above 800 is 800), paused, message')
    .addHelpText(
      'after',
      `\nExamples:\n  $ ohbackup rate ohbackup-backup-1b2c… com.example.notes 0     # pause the hand-over\n  $ ohbackup rate ohbackup-backup-1b2c… com.example.notes 800   # full speed\n${HELP_FOOTER}`,
    )
    .action(async (id: string, bundle: string, rate: number, o: { json?: boolean }) => {
      const sendRate = clampSendRate(rate);
      const r = await act(
        'rate',
        o.json,
        async () => {
          const ok = await (await SessionControl.of(id)).updateSendRate(bundle, rate);
          return { ok, message: `${about(id, bundle)}: ${ok ? rateText(sendRate) : 'not running: its rate was not set'}` };
        },
        (x) => x.message,
        (x) => ({ sessionId: id, bundleName: bundle, ok: x.ok, sendRate, paused: x.ok && sendRate === 0, message: x.message }),
      );
      if (!r.ok) process.exitCode = EXIT.failed;
    });

  program
    .command('release')
    .description(
      'end a session: stop what still runs, clean its temp data, complete its workflow, free its bundles; prints every outcome (warns when its tool is still attached)',
    )
    .argument('<session-id>', 'the session (its workflow ID; see `ohbackup sessions --running`)')
    .option('--json', 'print the summary line: sessionId, kind, endedBy, bundles, trailingEvents (how many events its tool had not acknowledged)')
    .addHelpText('after', `\nExamples:\n  $ ohbackup release ohbackup-backup-1b2c…\n  $ ohbackup release ohbackup-backup-1b2c… --json\n${HELP_FOOTER}`)
    .action(async (id: string, o: { json?: boolean }) => {
      await act(
        'release',
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
        (r) => ({
          sessionId: id,
          kind: r.kind,
          endedBy: r.endedBy ?? null,
          bundles: r.bundles.map((b) => jsonBundle(b, null)),
          trailingEvents: r.trailingEvents.length,
        }),
      );
    });
}
