/**
 * Routing work to one device among several: each device's worker serves the
 * device's own task queue, named here and nowhere else. A session that names
 * a device keeps its session workflow on the ordinary task queue and sends its
 * bundle children and every activity that touches the device's files to this
 * queue. Pure: safe anywhere.
 */
import { z } from 'zod';
import { DEVICE_QUEUE_PREFIX } from './deviceLabel.js';

export { deviceLabel } from './deviceLabel.js';

/** A device ID: a letter or digit, then letters, digits, '.', '_' or '-'; at most 64 characters. */
export const DeviceIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a device ID is 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');

/** `ohbackup-device-<id>`: the task queue of the worker started with `--device <id>`. */
export function deviceTaskQueue(id: string): string {
  const checked = DeviceIdSchema.safeParse(id);
  if (!checked.success) throw new TypeError(`"${id}" is not a device ID: ${checked.error.issues[0]?.message}`);
  return `${DEVICE_QUEUE_PREFIX}${id}`;
}

/** The task queue a worker polls: its device's own queue when it serves a named device, else the ordinary one. */
export function workerTaskQueue(taskQueue: string, device?: string): string {
  return device ? deviceTaskQueue(device) : taskQueue;
}
