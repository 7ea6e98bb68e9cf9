/**
 * Hands a bundle's packed files to the tool, one `fileReady` event per file,
 * paced by a token bucket at the bundle's send rate. Events go to the session
 * in small batches; the heartbeat records how far the session has been told,
 * so a retried attempt resumes there (the session drops any repeat).
 */
import { activityTags, metrics } from './metrics.js';
import { stat } from 'node:fs/promises';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { INDEX_URI } from '../common/manageIndex.js';
import type { EventBody } from '../common/session.js';
import { bundleEventsSignal, sendRateQuery } from '../common/messages.js';
import { readManageIndex } from '../engine/formats/manageIndex.js';
import { TokenBucket } from '../engine/tokenBucket.js';
import { ProgressReporter } from './progressReporter.js';

export interface HandOverInput {
  sessionWorkflowId: string;
  /** The bundle's child workflow, which holds its send rate. */
  bundleWorkflowId: string;
  bundleName: string;
  /** The folder the bundle was packed into. */
  packDir: string;
  /**
   * The packed files in hand-over order (the pack's summary), without manage.json; absent, they are read from the
   * index (a retry, a resume after a pause). A million-file bundle's index is some 150 MiB of JSON: parsing it on
   * this thread would stall every other activity's heartbeats and hold it all in memory.
   */
  files?: HandOverFile[];
  /** First file to hand over, unless a heartbeat of an earlier attempt says more. */
  from: number;
  /** The bundle's send rate when the workflow scheduled this (saves a first query); read again every RATE_POLL_MS. */
  sendRate?: number;
  /** Incremental: the new manifest, named in every file event. */
  manifestPath?: string;
  /** Events that follow the last file in its batch (the bundle's result and end): one signal fewer per bundle. */
  closing?: () => EventBody[];
  /** More to keep in every heartbeat (what a retry of the activity must know besides the next file). */
  heartbeat?: Record<string, unknown>;
}

/** What the hand-over needs of a packed file. */
export interface HandOverFile {
  uri: string;
  size: number;
}

export interface HandOverResult {
  /** The next file to hand over; below the total when the rate went to 0 (the workflow then waits durably). */
  next: number;
}

const RATE_POLL_MS = 500;
/** Batches signalled but not yet confirmed before pacing waits for them (bounds what a retry repeats). */
const MAX_BATCHES_IN_FLIGHT = 4;

export async function handOverFiles(client: Client, input: HandOverInput): Promise<HandOverResult> {
  const ctx = Context.current();
  const files = input.files ?? (await readManageIndex(`${input.packDir}/${INDEX_URI}`)).files.map((f) => ({ uri: f.uri, size: f.size }));
  const list = [
    ...files,
    // The index goes last: the bundle is complete once the tool holds it (api.md §9).
    { uri: INDEX_URI, size: -1 },
  ];
  const resumeAt = (ctx.info.heartbeatDetails as { next?: number } | undefined)?.next;
  let next = Math.max(input.from, resumeAt ?? 0);

  const self = client.workflow.getHandle(input.bundleWorkflowId);
  const session = client.workflow.getHandle(input.sessionWorkflowId);
  const bucket = new TokenBucket(input.sendRate ?? (await self.query(sendRateQuery)));
  const rate = new RateFollower(bucket, () => self.query(sendRateQuery));
  const paused = rate.paused;
  const stop = AbortSignal.any([ctx.cancellationSignal, paused]);

  const progress = new ProgressReporter(client, input.sessionWorkflowId, input.bundleName);
  progress.start(`handing over: ${next}/${list.length} files`);
  let batch: EventBody[] = [];
  const tags = activityTags(ctx.info);
  // Batches are signalled in order but without stopping the pacing: a signal slower than the
  // bucket's burst would otherwise cost tokens for good. Only what the session holds is heartbeated.
  let confirmed = next;
  let sending: Promise<void> = Promise.resolve();
  let inFlight = 0;
  const flush = () => {
    if (batch.length === 0) return;
    const events = batch;
    const upTo = next;
    batch = [];
    inFlight++;
    sending = sending.then(async () => {
      await session.signal(bundleEventsSignal, events);
      inFlight--;
      confirmed = upTo;
      // The last batch also carries the bundle's result and end: only files count.
      metrics().handedFiles.add(
        events.reduce((n, e) => n + (e.type === 'fileReady' ? 1 : 0), 0),
        tags,
      );
      metrics().handedBytes.add(
        events.reduce((n, e) => n + (e.type === 'fileReady' ? e.size : 0), 0),
        tags,
      );
      ctx.heartbeat({ ...input.heartbeat, next: confirmed });
    });
    sending.catch(() => undefined); // observed by the awaits below
  };

  try {
    while (next < list.length) {
      if (bucket.rate === 0) break;
      if (inFlight >= MAX_BATCHES_IN_FLIGHT) await sending;
      try {
        await bucket.take(stop);
      } catch (err) {
        if (paused.aborted && !ctx.cancellationSignal.aborted) break;
        throw err;
      }
      const item = list[next]!;
      const path = `${input.packDir}/${item.uri}`;
      batch.push({
        type: 'fileReady',
        bundleName: input.bundleName,
        fileIndex: next,
        uri: item.uri,
        size: item.size >= 0 ? item.size : (await stat(path)).size,
        path,
        ...(input.manifestPath ? { manifestPath: input.manifestPath } : {}),
        readyAt: Date.now(),
      });
      next += 1;
      progress.update(`handing over: ${next}/${list.length} files`);
      // About a tenth of a second's worth of files per signal keeps history small and delivery smooth.
      // (The last file waits for the final flush, which may carry the closing events.)
      if (next < list.length && batch.length >= Math.max(1, Math.floor(bucket.rate / 10))) flush();
      else ctx.heartbeat({ ...input.heartbeat, next: confirmed });
    }
    if (next >= list.length && input.closing) batch.push(...input.closing());
    flush();
    await sending;
  } finally {
    rate.stop();
    progress.stop();
  }
  return { next };
}

/**
 * The rate may change while files go out: it is read twice a second and the
 * bucket re-paced (a pending wait included). A rate of 0 aborts `paused`.
 */
class RateFollower {
  readonly #paused = new AbortController();
  readonly #poll: NodeJS.Timeout;

  constructor(bucket: TokenBucket, readRate: () => Promise<number>) {
    this.#poll = setInterval(() => {
      readRate().then(
        (rate) => {
          bucket.setRate(rate);
          if (rate === 0) this.#paused.abort(new Error('paused'));
        },
        () => undefined, // a missed read keeps the last rate
      );
    }, RATE_POLL_MS);
  }

  get paused(): AbortSignal {
    return this.#paused.signal;
  }

  stop(): void {
    clearInterval(this.#poll);
  }
}
