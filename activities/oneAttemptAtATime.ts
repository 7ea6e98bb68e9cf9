/**
 * An activity attempt the server gave up on (its heartbeat timed out, say while
 * the disk stalled the worker) may still be running here when its retry starts:
 * it stops only at its next heartbeat. Two attempts working on one bundle's
 * folders at once would undo each other (a restore moving big files back and
 * forth, a pack rewriting the slices a resume keeps). So attempts on one key
 * run one after another in this worker: a retry waits, heartbeating, until the
 * abandoned attempt has noticed and stopped.
 */
import { Context } from '@temporalio/activity';

const running = new Map<string, Promise<unknown>>();

export async function oneAttemptAtATime<T>(key: string, attempt: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  for (let earlier = running.get(key); earlier; earlier = running.get(key)) {
    // Keep this attempt alive (with the details a later retry resumes from) while the earlier one winds down.
    await Promise.race([earlier.catch(() => undefined), ctx.sleep(1000)]);
    ctx.heartbeat(ctx.info.heartbeatDetails);
  }
  const p = attempt();
  running.set(key, p);
  try {
    return await p;
  } finally {
    if (running.get(key) === p) running.delete(key);
  }
}
