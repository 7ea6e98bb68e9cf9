/**
 * Heartbeats an activity while its engine job runs on another thread. The job's progress heartbeats stop while
 * it is in one long synchronous step (reading and checking the index of a bundle of a million files takes
 * seconds), and the bundle's short heartbeat timeout (workflows/bundle/lifecycle.ts) would then take a busy
 * worker for a dead one and retry the job from the start, every attempt the same way. The main thread is free
 * meanwhile, so it says the worker lives, with the job's last details (the durable point a retry resumes from).
 */
import type { Context } from '@temporalio/activity';

/** Often enough within a 5 s heartbeat timeout; the SDK sends at most one heartbeat per throttle interval anyway. */
const EVERY_MS = 1_000;

export interface JobHeartbeat {
  /** The job's progress: heartbeated now, and again by the timer until the next. */
  report(details: unknown): void;
  stop(): void;
}

export function heartbeatWhile(ctx: Context): JobHeartbeat {
  // Until the job reports, what an earlier attempt left: a beat must not drop details a retry reads.
  let last: unknown = ctx.info.heartbeatDetails;
  const timer = setInterval(() => ctx.heartbeat(last), EVERY_MS);
  return {
    report(details) {
      last = details;
      ctx.heartbeat(details);
    },
    stop: () => clearInterval(timer),
  };
}
