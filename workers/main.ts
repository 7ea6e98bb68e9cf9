#!/usr/bin/env node
/** Thin entry point: a worker for the device at OHBACKUP_DATA_ROOT (the same as `ohbackup worker`; OHBACKUP_DEVICE as `--device`). */
import { DeviceIdSchema } from '../common/deviceQueue.js';
import { readSettings } from '../config/env.js';
import { runWorker } from './runWorker.js';

const settings = readSettings();
if (!settings.dataRoot) {
  console.error('OHBACKUP_DATA_ROOT is not set: name the device data root this worker serves.');
  process.exit(2);
}
if (settings.device !== undefined && !DeviceIdSchema.safeParse(settings.device).success) {
  console.error(`OHBACKUP_DEVICE="${settings.device}" is not a device ID: 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit.`);
  process.exit(2);
}
try {
  await runWorker({
    settings,
    dataRoot: settings.dataRoot,
    device: settings.device,
    onReady: (taskQueue) => console.log(`ohbackup worker ready on task queue ${taskQueue}`),
  });
} catch (err) {
  // One line that says what is wrong (e.g. a bad OHBACKUP_METRICS_ADDRESS), not a stack.
  console.error(`The worker failed: ${(err as Error).message ?? String(err)}`);
  process.exit(1);
}
