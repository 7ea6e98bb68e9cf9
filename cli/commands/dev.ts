/** `ohbackup dev`: a local Temporal dev server plus one worker for a device, until Ctrl-C. */
import path from 'node:path';
import type { Command } from 'commander';
import { readSettings } from '../../config/env.js';
import { startDevServer, type DevServer } from '../../workers/devServer.js';
import { runWorker } from '../../workers/runWorker.js';
import { TemporalCliMissing } from '../../workers/temporalCli.js';
import { EXIT, onStopSignals, parsePort, requireDataRoot } from '../shared.js';

interface DevOptions {
  port: number;
  uiPort: number;
  dataRoot?: string;
  headless?: boolean;
}

export function registerDev(program: Command): void {
  program
    .command('dev')
    .summary('run a local Temporal server and a worker for a device (Ctrl-C stops both)')
    .description('Start a local Temporal dev server (state kept in $OHBACKUP_STATE_DIR/temporal.db) and one ohbackup worker for a device; Ctrl-C stops both.')
    .option('--port <n>', 'gRPC port of the server (0 = a free one)', parsePort, 7233)
    .option('--ui-port <n>', 'port of the Temporal Web UI (0 = a free one)', parsePort, 8233)
    .option('--data-root <dir>', 'the device data root the worker serves (default: $OHBACKUP_DATA_ROOT)')
    .option('--headless', 'no Web UI')
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup sample-device ./device && ohbackup dev --data-root ./device
  $ OHBACKUP_STATE_DIR=/tmp/st ohbackup dev --port 0 --ui-port 0 --data-root ./device
  then, in another shell:
  $ ohbackup backup --out ./set

Needs the Temporal CLI (\`temporal\`) on PATH, in $(go env GOPATH)/bin, or in $TEMPORAL_CLI;
with a Go toolchain it is built once if missing.`,
    )
    .action(async (opts: DevOptions, cmd: Command) => {
      const dataRoot = requireDataRoot(cmd, opts.dataRoot);
      const settings = readSettings();
      const dbFile = path.join(settings.stateDir, 'temporal.db');

      // Handle signals from the start: Node's default (exit at once) would leave the server running.
      let server: DevServer | undefined;
      const worker = new AbortController();
      let stopping = false;
      const removeHandlers = onStopSignals(
        (signal) => {
          stopping = true;
          console.error(`\n${signal}: stopping the worker, then the Temporal server (again to force) ...`);
          worker.abort();
        },
        () => {
          console.error('Forced stop.');
          server?.process.kill('SIGKILL');
          process.exit(EXIT.failed);
        },
      );

      try {
        server = await startDevServer({ port: opts.port, uiPort: opts.uiPort, headless: opts.headless, dbFile });
      } catch (err) {
        removeHandlers();
        console.error(err instanceof TemporalCliMissing ? err.message : `Could not start the Temporal dev server: ${(err as Error).message}`);
        process.exitCode = EXIT.failed;
        return;
      }
      if (stopping) {
        await server.stop();
        removeHandlers();
        return;
      }
      // The server going away on its own is a failure, not a shutdown.
      let serverDied = false;
      server.process.once('exit', (code, signal) => {
        if (stopping) return;
        serverDied = true;
        console.error(`The Temporal dev server exited unexpectedly (${signal ?? `code ${code}`}); stopping the worker.`);
        worker.abort();
      });

      const env = `TEMPORAL_ADDRESS=${server.address}${server.uiUrl && server.uiUrl !== 'http://127.0.0.1:8233' ? ` OHBACKUP_UI_URL=${server.uiUrl}` : ''}`;
      try {
        await runWorker({
          settings,
          dataRoot,
          address: server.address,
          namespace: server.namespace,
          signal: worker.signal,
          onReady: () =>
            console.log(
              [
                `Temporal server  ${server!.address}  (namespace ${server!.namespace}, database ${dbFile})`,
                `Web UI           ${server!.uiUrl ?? '(headless)'}`,
                `Task queue       ${settings.taskQueue}`,
                `Device           ${dataRoot}`,
                '',
                'Worker ready; Ctrl-C stops it and the server. From another shell:',
                `  ${env} ohbackup backup --out ./set`,
                `  ${env} ohbackup backup      # a snapshot in the state folder's repository (${path.join(settings.stateDir, 'repository')}), no setup`,
                `  ${env} ohbackup snapshots && ohbackup restore --from latest --to ./device2`,
              ].join('\n'),
            ),
        });
      } catch (err) {
        console.error(`The worker failed: ${(err as Error).message}`);
        process.exitCode = EXIT.failed;
      }
      stopping = true;
      await server.stop();
      removeHandlers();
      if (serverDied) process.exitCode = EXIT.failed;
      else if (!process.exitCode) console.error('Stopped the worker and the Temporal server.');
    });
}
