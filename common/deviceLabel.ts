/**
 * The device a task queue serves, apart from common/deviceQueue.ts so the
 * session workflow can name it without bringing zod into the workflow bundle
 * (each new workflow evaluates the bundle's modules again: zod's schemas
 * cost every bundle child milliseconds). Pure: safe anywhere.
 */

/** The prefix of a device's own task queue, `ohbackup-device-<id>`. */
export const DEVICE_QUEUE_PREFIX = 'ohbackup-device-';

/**
 * The device a task queue serves, as metrics labels and the OhbackupDevice
 * search attribute name it: the device ID of a device's own queue, else the
 * queue's name (one device per ordinary queue).
 */
export function deviceLabel(taskQueue: string): string {
  return taskQueue.startsWith(DEVICE_QUEUE_PREFIX) ? taskQueue.slice(DEVICE_QUEUE_PREFIX.length) : taskQueue;
}
