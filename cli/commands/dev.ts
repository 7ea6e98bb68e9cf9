/** `ohbackup dev`: a local Temporal dev server plus one worker for a device, until Ctrl-C. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_UI_URL, readSettings } from '../../config/env.js';
import { StateFolderInUse, lockStateFolder, type DevLock } from '../../engine/stateLock.js';
import type { DevServer } from '../../workers/devServer.js';
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
      // Before anything starts: a second server on the same database would corrupt it.
      let lock: DevLock;
      try {
        mkdirSync(settings.stateDir, { recursive: true, mode: 0o700 });
        lock = lockStateFolder(settings.stateDir, { dataRoot: path.resolve(dataRoot) });
      } catch (err) {
        console.error(err instanceof StateFolderInUse ? err.message : `Cannot lock the state folder ${settings.stateDir}: ${(err as Error).message}`);
        process.exitCode = EXIT.failed;
        return;
      }

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
          lock?.release();
          process.exit(EXIT.failed);
        },
      );

      // Loaded here, not at start-up: every other command starts without the worker SDK.
      const [{ startDevServer }, { runWorker }, { TemporalCliMissing }] = await Promise.all([
        import('../../workers/devServer.js'),
        import('../../workers/runWorker.js'),
        import('../../workers/temporalCli.js'),
      ]);
      try {
        server = await startDevServer({ port: opts.port, uiPort: opts.uiPort, headless: opts.headless, dbFile });
      } catch (err) {
        removeHandlers();
        lock.release();
        console.error(err instanceof TemporalCliMissing ? err.message : `Could not start the Temporal dev server: ${(err as Error).message}`);
        process.exitCode = EXIT.failed;
        return;
      }
      if (stopping) {
        await server.stop();
        removeHandlers();
        lock.release();
        return;
      }
      lock.update({ address: server.address, uiUrl: server.uiUrl });
      // The server going away on its own is a failure, not a shutdown.
      let serverDied = false;
      server.process.once('exit', (code, signal) => {
        if (stopping) return;
        serverDied = true;
        console.error(`The Temporal dev server exited unexpectedly (${signal ?? `code ${code}`}); stopping the worker.`);
        worker.abort();
      });

      // Links made in this process (its worker's scheduled runs) point to this server's UI, on whatever port it listens.
      if (server.uiUrl && !process.env.OHBACKUP_UI_URL) process.env.OHBACKUP_UI_URL = server.uiUrl;
      const env = `TEMPORAL_ADDRESS=${server.address}${server.uiUrl && server.uiUrl !== DEFAULT_UI_URL ? ` OHBACKUP_UI_URL=${server.uiUrl}` : ''}`;
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
      lock.release();
      if (serverDied) process.exitCode = EXIT.failed;
      else if (!process.exitCode) console.error('Stopped the worker and the Temporal server.');
    });
}
