#!/usr/bin/env node
/** Thin entry point: a worker for the device at OHBACKUP_DATA_ROOT (the same as `ohbackup worker`). */
import { readSettings } from '../common/env.js';
import { runWorker } from './runWorker.js';

const settings = readSettings();
if (!settings.dataRoot) {
  console.error('OHBACKUP_DATA_ROOT is not set: name the device data root this worker serves.');
  process.exit(2);
}
await runWorker({ settings, dataRoot: settings.dataRoot, onReady: () => console.log(`ohbackup worker ready on task queue ${settings.taskQueue}`) });
