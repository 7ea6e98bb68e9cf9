#!/usr/bin/env node
/** The `ohbackup` command line: each command lives in cli/commands/. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { BusinessError } from '../common/businessError.js';
import { registerCommands } from './commandTable.js';
import { jsonRequested, printJsonError } from './output/json.js';
import { EXIT } from './shared.js';

const json = jsonRequested();

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('ohbackup')
  .description('OpenHarmony app backup (@ohos.file.backup) as durable Temporal workflows.')
  .version(version)
  // Throw instead of exiting, so every usage error leaves with code 2 (below); set before the
  // commands are added, which inherit it.
  .exitOverride()
  .showHelpAfterError('(add --help for usage)')
  .showSuggestionAfterError()
  // --json: commander's own error (an unknown option, a bad argument) is printed as the JSON error line below instead.
  .configureOutput({ outputError: (text, write) => (json ? undefined : write(text)) })
  .addHelpText(
    'after',
    `
Getting started:
  $ ohbackup sample-device ./device              # a device to back up
  $ ohbackup dev --data-root ./device            # local Temporal server + worker (keep it running)
  $ ohbackup backup --out ./set                  # in another shell: back up every backup-able bundle
  $ ohbackup restore --from ./set --to ./device2 # restore the set onto an empty data root
  $ ohbackup schedule create nightly --dest ./sets --incremental --cron "0 2 * * *"
  $ ohbackup backup                              # without --out: a snapshot in the repository (default: the state folder's)
  $ ohbackup snapshots && ohbackup restore --from latest --to ./device3

Every command has its own help: ohbackup <command> --help (ohbackup schedule <subcommand> --help).

Exit codes:
  0    success (backup, restore: every bundle done)
  1    failure: the operation failed, or all bundles did; the Temporal service is unreachable; no worker serves the device;
       no such session or schedule
  2    wrong usage: unknown command or option, a missing or bad argument (the message says which)
  3    partial: some bundles done, some failed (backup, restore, schedule trigger --wait)
  130  interrupted by Ctrl-C (backup and restore release their session first)

Settings (environment): OHBACKUP_DATA_ROOT, OHBACKUP_STATE_DIR (default .ohbackup), OHBACKUP_TASK_QUEUE
(default ohbackup), OHBACKUP_UI_URL, OHBACKUP_REPOSITORY (default: the state folder's repository), RESTIC_PASSWORD_FILE; Temporal's own TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, ...`,
  );

await registerCommands(program);

let code: number;
try {
  await program.parseAsync();
  code = typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version "exit" with 0; anything else commander reports is wrong usage.
    code = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (json && code !== EXIT.ok) printJsonError({ code: err.code, message: err.message.replace(/^error: /, '') }, code);
  } else {
    const message = (err as Error)?.message ?? String(err);
    if (json) printJsonError({ code: err instanceof BusinessError ? err.code : 'ohbackup.failed', message }, EXIT.failed);
    else console.error(`ohbackup: ${err instanceof BusinessError ? `${err.code} ` : ''}${message}`);
    code = EXIT.failed;
  }
}
// Exit explicitly: a lingering handle (a gRPC channel, a timer) must not keep a finished command alive.
process.exit(code);
