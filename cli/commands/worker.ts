/** `ohbackup worker`: serves one device's sessions on a Temporal service, until Ctrl-C. */
import { Option, type Command } from 'commander';
import { DeviceIdSchema } from '../../common/deviceQueue.js';
import { DEFAULT_TEMPORAL_ADDRESS, readSettings } from '../../config/env.js';
import { temporalTarget } from '../../config/temporalConfig.js';
import type { LogFormat } from '../../workers/logFormat.js';
import { isConnectFailure, unreachableMessage } from '../../client/runs/setup.js';
import { EXIT, onStopSignals, parseDeviceId, requireDataRoot, usageError } from '../shared.js';

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
    .addOption(
      new Option(
        '--device <id>',
        'serve this device only: poll its own task queue ohbackup-device-<id> for the sessions that name it (default: $OHBACKUP_DEVICE)',
      )
        .argParser(parseDeviceId)
        .conflicts('taskQueue'),
    )
    .addOption(
      new Option('--log-format <format>', 'one log line per entry as text or json (default: $OHBACKUP_LOG_FORMAT, else text)').choices([
        'text',
        'json',
      ] satisfies LogFormat[]),
    )
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup worker --data-root ./device
  $ TEMPORAL_ADDRESS=temporal.example:7233 ohbackup worker --data-root /srv/device --task-queue phone-1
  $ ohbackup worker --data-root /srv/device --device phone-1        # then: ohbackup backup --device phone-1 --out ./set

Several workers may serve one task queue (same data root, shared filesystem): they share the work,
and when one dies its work is retried on the others within seconds.

With --device ID the worker polls only the device's own task queue (ohbackup-device-ID): it runs the
bundle children and the device activities of sessions that name the device (\`ohbackup backup --device ID\`).
The session workflows themselves run on the ordinary task queue (OHBACKUP_TASK_QUEUE), so some worker
without --device must serve it too (e.g. the one on the machine that runs the tools).

Settings: OHBACKUP_MAX_ACTIVITIES caps the activities this worker runs at once; OHBACKUP_METRICS_ADDRESS
(host:port) serves Prometheus metrics; OHBACKUP_LOG_LEVEL (default INFO: a line per session and bundle);
OHBACKUP_LOG_FORMAT; OHBACKUP_UI_URL (the Temporal UI that scheduled runs link to).

For a local Temporal server with a worker in one command, use \`ohbackup dev\`.`,
    )
    .action(async (opts: { dataRoot?: string; taskQueue?: string; device?: string; logFormat?: LogFormat }, cmd: Command) => {
      const dataRoot = requireDataRoot(cmd, opts.dataRoot);
      // Loaded here, not at start-up: every other command starts without the worker SDK.
      const [{ runWorker }, { parseLogFormat }] = await Promise.all([import('../../workers/runWorker.js'), import('../../workers/logFormat.js')]);
      let logFormat: LogFormat;
      try {
        logFormat = opts.logFormat ?? parseLogFormat(process.env.OHBACKUP_LOG_FORMAT);
      } catch (err) {
        usageError(cmd, (err as Error).message);
      }
      const settings = { ...readSettings(), ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}) };
      // --task-queue names the ordinary queue explicitly: then OHBACKUP_DEVICE does not apply.
      const device = opts.device ?? (opts.taskQueue ? undefined : settings.device);
      if (device !== undefined && !DeviceIdSchema.safeParse(device).success) usageError(cmd, `OHBACKUP_DEVICE="${device}" is not a device ID.`);
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
          device,
          logFormat,
          signal: stop.signal,
          onReady: (taskQueue) => {
            ready = true;
            console.log(
              `ohbackup worker for ${dataRoot}${device ? ` (device ${device})` : ''}\non ${address} (namespace ${namespace}), task queue ${taskQueue}; Ctrl-C stops it.`,
            );
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
