/** How activity errors become the reference's coded failures. */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { BundleNameSchema, SessionIdSchema } from '../common/device.js';
import { ErrorCode, codeForSystemError } from '../common/errors.js';
import { codedFailure } from '../common/rules.js';
import type { Device, DeviceBundle } from '../engine/device.js';

/** Keeps cancellation as it is; turns a system error into its reference code, anything else into `fallback`. */
export function asFailure(err: unknown, fallback: number): unknown {
  if (err instanceof ApplicationFailure || Context.current().cancellationSignal.aborted) return err;
  const sys = codeForSystemError(err);
  return codedFailure(sys === ErrorCode.UNKNOWN ? fallback : sys, err instanceof Error ? err.message : String(err));
}

/**
 * The bundle whose session folders an activity is about to touch. Both names become folder names:
 * checked here too, so a session workflow started by hand (not through the tool library) cannot
 * point an rm or a write outside them.
 */
export function sessionBundle(device: Device, sessionId: string, bundleName: string): DeviceBundle {
  if (!SessionIdSchema.safeParse(sessionId).success || !BundleNameSchema.safeParse(bundleName).success) {
    throw codedFailure(
      ErrorCode.INVALID_ARGUMENT,
      `refused: session "${sessionId.slice(0, 80)}" / bundle "${bundleName.slice(0, 80)}" is not a safe folder name`,
    );
  }
  return device.bundle(bundleName);
}
