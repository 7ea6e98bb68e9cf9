/**
 * Which device a session works on, as one key. Two sessions conflict over a
 * bundle only when their keys are equal (api.md §6, 13500013). Pure, so
 * workflow code may import it.
 */

/**
 * The device a session serves: today the device's task queue names it (one
 * worker fleet per device); an explicit device ID, when a session has one,
 * wins.
 */
export function deviceKey(taskQueue: string, device?: string): string {
  return device ? `device:${device}` : `queue:${taskQueue}`;
}

/** The workflow that holds a device's bundle claims: one per device key. */
export function bundleClaimWorkflowId(key: string): string {
  return `ohbackup-bundle-claims/${key}`;
}
