/**
 * One per device (workflow ID from the device key): which session holds which
 * bundle, so that a bundle already in another active session gets 13500013
 * (api.md §6) and only then.
 *
 * A session claims the bundles of each appendBundles call in one update (the
 * claim activity starts this workflow with it when it is not running) and
 * releases them when it ends. Requests are decided one at a time, so of two
 * sessions appending the same bundle at once exactly one gets it. A claim
 * whose session no longer runs (terminated, failed, ended without releasing)
 * is dropped as soon as another session asks for the bundle, and at every
 * sweep while claims are held. With no claims left the workflow completes;
 * with a long history it continues as new.
 */
import { allHandlersFinished, condition, continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import {
  bundleClaimsQuery,
  claimBundlesUpdate,
  releaseBundleClaimsUpdate,
  type BundleClaimInput,
  type BundleClaimWorkflow,
  type ClaimAnswer,
} from '../common/messages.js';
import type { createActivities } from '../activities/index.js';

const claimActivities = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '200 ms' },
});

/** How often held claims are checked against their sessions when nobody asks (keeps a dead session's claims from lingering). */
const SWEEP_EVERY = '10 minutes';

export async function bundleClaimWorkflow(input: BundleClaimInput): Promise<void> {
  const claims = new Map<string, string>(Object.entries(input.claims ?? {}));
  // When each claim was made (workflow time): a refused session is told since when the bundle is held.
  const since = new Map<string, number>(Object.entries(input.since ?? {}));
  let busy = false;

  /** Runs `fn` alone: requests that look up sessions must not interleave. */
  async function exclusively<T>(fn: () => Promise<T>): Promise<T> {
    while (busy) await condition(() => !busy);
    busy = true;
    try {
      return await fn();
    } finally {
      busy = false;
    }
  }

  function forget(bundle: string): void {
    claims.delete(bundle);
    since.delete(bundle);
  }

  /** Drops the claims of those `holders` whose session workflow no longer runs. */
  async function dropEnded(holders: string[]): Promise<void> {
    if (holders.length === 0) return;
    const running = new Set(await claimActivities.runningSessions({ workflowIds: holders }));
    for (const [bundle, holder] of claims) {
      if (holders.includes(holder) && !running.has(holder)) forget(bundle);
    }
  }

  setHandler(claimBundlesUpdate, (req) =>
    exclusively(async () => {
      const names = [...new Set(req.bundleNames)];
      const heldBy = (name: string) => {
        const holder = claims.get(name);
        return holder !== undefined && holder !== req.sessionWorkflowId ? holder : undefined;
      };
      // Only a conflict costs a look-up: is the holder still running?
      await dropEnded([...new Set(names.map(heldBy).filter((h): h is string => h !== undefined))]);
      const held: ClaimAnswer['held'] = [];
      for (const name of names) {
        const holder = heldBy(name);
        if (holder) held.push({ bundleName: name, sessionWorkflowId: holder, since: since.get(name) });
        else if (claims.get(name) !== req.sessionWorkflowId) {
          claims.set(name, req.sessionWorkflowId);
          since.set(name, Date.now());
        }
      }
      return { held };
    }),
  );

  setHandler(releaseBundleClaimsUpdate, (sessionWorkflowId) => {
    let released = 0;
    for (const [bundle, holder] of claims) {
      if (holder === sessionWorkflowId) {
        forget(bundle);
        released += 1;
      }
    }
    return released;
  });

  setHandler(bundleClaimsQuery, () => Object.fromEntries(claims));

  for (;;) {
    const settled = await condition(() => !busy && (claims.size === 0 || workflowInfo().continueAsNewSuggested), SWEEP_EVERY);
    if (!settled) {
      await exclusively(() => dropEnded([...new Set(claims.values())]));
      continue;
    }
    await condition(allHandlersFinished);
    if (busy) continue;
    if (claims.size === 0) return;
    if (workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof bundleClaimWorkflow>({ deviceKey: input.deviceKey, claims: Object.fromEntries(claims), since: Object.fromEntries(since) });
    }
  }
}

void (bundleClaimWorkflow satisfies BundleClaimWorkflow);
