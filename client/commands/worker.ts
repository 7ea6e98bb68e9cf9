/** `ohbackup worker`: serves one device's sessions on a Temporal service, until Ctrl-C. */
import type { Command } from 'commander';
import { DEFAULT_TEMPORAL_ADDRESS, readSettings } from '../../common/env.js';
import { temporalTarget } from '../../common/temporalConfig.js';
import { runWorker } from '../../workers/runWorker.js';
import { EXIT, isConnectFailure, onStopSignals, requireDataRoot, unreachableMessage } from './shared.js';

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .summary('run the backup service of a device on a Temporal service')
    .description(
      'Run the backup service of one device: a Temporal worker for its task queue, on the service named by the standard Temporal ' +
        'environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE; default 127.0.0.1:7233). Ctrl-C stops it.',
    )
    .option('--data-root <dir>', 'the device data root (default: $OHBACKUP_DATA_ROOT)')
    .option('--task-queue <name>', 'the device task queue (default: $OHBACKUP_TASK_QUEUE, else "ohbackup")')
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup worker --data-root ./device
  $ TEMPORAL_ADDRESS=temporal.example:7233 ohbackup worker --data-root /srv/device --task-queue phone-1

For a local Temporal server with a worker in one command, use \`ohbackup dev\`.`,
    )
    .action(async (opts: { dataRoot?: string; taskQueue?: string }, cmd: Command) => {
      const dataRoot = requireDataRoot(cmd, opts.dataRoot);
      const settings = { ...readSettings(), ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}) };
      const { connectionOptions, namespace } = temporalTarget();
      const address = connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS;

      const stop = new AbortController();
      let ready = false;
      const removeHandlers = onStopSignals(
        (signal) => {
          console.error(`\n${signal}: stopping the worker (again to force) ...`);
          stop.abort();
        },
        () => process.exit(EXIT.failed),
      );
      try {
        await runWorker({
          settings,
          dataRoot,
          signal: stop.signal,
          onReady: () => {
            ready = true;
            console.log(`ohbackup worker for ${dataRoot}\non ${address} (namespace ${namespace}), task queue ${settings.taskQueue}; Ctrl-C stops it.`);
          },
        });
        console.error('Worker stopped.');
      } catch (err) {
        const message = (err as Error).message ?? String(err);
        console.error(!ready && isConnectFailure(err) ? unreachableMessage(address, message) : `The worker failed: ${message}`);
        process.exitCode = EXIT.failed;
      } finally {
        removeHandlers();
      }
    });
}
