/**
 * Steering a running session by its ID from any tool (the command line's
 * status/cancel/timer/rate/release): the workflow's authoritative answers,
 * not a tool's local view.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { BusinessError } from '../../common/businessError.js';
import { ErrorCode } from '../../common/errors.js';
import { bundleWorkflowId, describeEnd, type BundleOutcome, type SessionResult } from '../../common/session.js';
import { clampSendRate } from '../../common/rules.js';
import {
  cancelBundleUpdate,
  eventsQuery,
  sendRateQuery,
  toolBegunQuery,
  outcomesQuery,
  releaseUpdate,
  updateSendRateSignal,
  updateTimerSignal,
} from '../../common/messages.js';
import { getClient } from '../connection.js';
import { OhbackupBundles, OhbackupKind } from '../../common/searchAttributes.js';
import { toBusinessError } from '../failures.js';
import { BundleNameArg, SendRateArg, TimeoutArg, parseArg } from '../validate.js';

/** What a tool tells a running bundle child: a new deadline, a new send rate, or that it ran onBundleBegin (a query). */
export type BundleSignal = { what: 'updateTimer' | 'updateSendRate'; value: number } | { what: 'toolBegun' };

/** Tells the bundle child `<sessionId>/<bundleName>`: the one way both a session and SessionControl reach a running bundle. */
export async function signalBundle(client: Client, sessionId: string, bundleName: string, signal: BundleSignal): Promise<void> {
  const child = client.workflow.getHandle(bundleWorkflowId(sessionId, bundleName));
  const send = async () => {
    if (signal.what === 'toolBegun') await child.query(toolBegunQuery, true);
    else await child.signal(signal.what === 'updateTimer' ? updateTimerSignal : updateSendRateSignal, signal.value);
  };
  // The session reports a bundle's begin as it starts the child, and the service creates the child a moment
  // later: a signal that overtakes it is sent again once the child exists (a closed child is no retry).
  const until = Date.now() + CHILD_START_WAIT_MS;
  for (let pause = 20; ; pause = Math.min(pause * 2, 250)) {
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError) || Date.now() > until) throw err;
      if (
        await child.describe().then(
          () => true,
          () => false,
        )
      )
        throw err;
      await sleep(pause);
    }
  }
}
/** How long a signal waits for a bundle child that its session has just started. */
const CHILD_START_WAIT_MS = 5_000;

export interface SessionStatus {
  sessionId: string;
  /** Temporal's view: RUNNING, COMPLETED, TERMINATED, … */
  status: string;
  startTime?: string;
  closeTime?: string;
  bundles: BundleOutcome[];
}

export class SessionControl {
  private constructor(
    private readonly client: Client,
    readonly sessionId: string,
  ) {}

  static async of(sessionId: string): Promise<SessionControl> {
    return new SessionControl(await getClient(), sessionId);
  }

  private get handle() {
    return this.client.workflow.getHandle(this.sessionId);
  }

  async status(): Promise<SessionStatus> {
    return this.guard(async () => {
      const d = await this.handle.describe();
      const bundles =
        d.status.name === 'RUNNING'
          ? await this.handle.query(outcomesQuery)
          : d.status.name === 'COMPLETED'
            ? ((await this.handle.result()) as SessionResult).bundles
            : [];
      return { sessionId: this.sessionId, status: d.status.name, startTime: d.startTime.toISOString(), closeTime: d.closeTime?.toISOString(), bundles };
    });
  }

  /** The send rate of each running backup bundle, as its child says (0: paused); bundles not running, or restoring, are left out. */
  async sendRates(bundles: Array<Pick<BundleOutcome, 'bundleName' | 'state'>>): Promise<Map<string, number>> {
    const rates = new Map<string, number>();
    await Promise.all(
      bundles
        .filter((b) => b.state === 'running')
        .map(async (b) => {
          const rate = await this.client.workflow
            .getHandle(bundleWorkflowId(this.sessionId, b.bundleName))
            .query(sendRateQuery)
            .catch(() => undefined);
          if (typeof rate === 'number') rates.set(b.bundleName, rate);
        }),
    );
    return rates;
  }

  /** 0, 13500011 or 13500012, as the workflow decides. */
  cancel(bundleName: string): Promise<number> {
    parseArg(BundleNameArg, bundleName, 'bundleName');
    return this.guard(() => this.handle.executeUpdate(cancelBundleUpdate, { args: [bundleName] }));
  }

  /** true when the bundle is running and its deadline was re-armed. */
  updateTimer(bundleName: string, timeoutMs: number): Promise<boolean> {
    parseArg(BundleNameArg, bundleName, 'bundleName');
    parseArg(TimeoutArg, timeoutMs, 'timeout');
    return this.signalRunning(bundleName, { what: 'updateTimer', value: timeoutMs });
  }

  /** true when the bundle is running and its rate was set (above 800 is 800; 0 pauses). */
  updateSendRate(bundleName: string, sendRate: number): Promise<boolean> {
    parseArg(BundleNameArg, bundleName, 'bundleName');
    const rate = clampSendRate(parseArg(SendRateArg, sendRate, 'sendRate'));
    return this.signalRunning(bundleName, { what: 'updateSendRate', value: rate });
  }

  /**
   * Completes the session; resolves with every bundle's outcome. `by`: a tool
   * releasing a session of its own says 'tool'; otherwise the session's tool,
   * if still attached, reports "released by another client".
   */
  release(by: 'another client' | 'tool' = 'another client'): Promise<SessionResult> {
    return this.guard(async () => {
      await this.handle.executeUpdate(releaseUpdate, { args: [by === 'tool' ? {} : { by }] });
      return (await this.handle.result()) as SessionResult;
    });
  }

  /** How long ago the session's tool was heard from, when that is within its tool timeout (its tool is still attached); else undefined. */
  toolAttached(): Promise<number | undefined> {
    return this.guard(async () => {
      const page = await this.handle.query(eventsQuery, 0, 0);
      if (page.released || page.toolSeenAt === undefined || page.toolTimeoutMs === undefined) return undefined;
      const ago = Math.max(0, Date.now() - page.toolSeenAt);
      return ago < page.toolTimeoutMs ? ago : undefined;
    });
  }

  /** Only a bundle the workflow says is running: a signal to an ended child would fail, or wait for a new one. */
  private async signalRunning(bundleName: string, signal: BundleSignal): Promise<boolean> {
    return this.guard(async () => {
      const outcomes = await this.handle.query(outcomesQuery);
      if (outcomes.find((b) => b.bundleName === bundleName)?.state !== 'running') return false;
      await signalBundle(this.client, this.sessionId, bundleName, signal);
      return true;
    });
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if ((err as Error)?.name === 'WorkflowNotFoundError') {
        const ended = await this.howEnded();
        if (ended) throw new BusinessError(ErrorCode.NOT_PERMITTED, `Operation not permitted: ${ended}`);
        throw new BusinessError(ErrorCode.INVALID_ARGUMENT, `Invalid argument: no session ${this.sessionId}`);
      }
      throw toBusinessError(err);
    }
  }

  /** A session that has ended, in words: "the session X has ended at T: released by another client"; undefined when there is none. */
  private async howEnded(): Promise<string | undefined> {
    try {
      const d = await this.handle.describe();
      if (d.status.name === 'RUNNING') return undefined;
      const how = d.status.name === 'COMPLETED' ? describeEnd((await this.handle.result()) as SessionResult) : d.status.name.toLowerCase().replace(/_/g, ' ');
      return `the session ${this.sessionId} has ended${d.closeTime ? ` at ${d.closeTime.toISOString()}` : ''}: ${how}`;
    } catch {
      return undefined;
    }
  }
}

export interface SessionListing {
  sessionId: string;
  kind?: string;
  status: string;
  startTime: string;
  bundles: string[];
}

/** Sessions from Temporal visibility, newest first, found by the ohbackup search attributes. */
export async function listSessions(filter: { running?: boolean; bundle?: string; kind?: string; limit?: number } = {}): Promise<SessionListing[]> {
  const quote = (v: string) => `'${v.replace(/['\\]/g, '')}'`;
  const clauses = [`WorkflowType = 'sessionWorkflow'`];
  if (filter.running) clauses.push(`ExecutionStatus = 'Running'`);
  if (filter.bundle) clauses.push(`OhbackupBundles = ${quote(parseArg(BundleNameArg, filter.bundle, 'bundle'))}`);
  if (filter.kind) clauses.push(`OhbackupKind = ${quote(filter.kind)}`);
  const client = await getClient();
  const out: SessionListing[] = [];
  try {
    for await (const w of client.workflow.list({ query: clauses.join(' AND ') })) {
      out.push({
        sessionId: w.workflowId,
        kind: w.typedSearchAttributes.get(OhbackupKind),
        status: w.status.name,
        startTime: w.startTime.toISOString(),
        bundles: w.typedSearchAttributes.get(OhbackupBundles) ?? [],
      });
      if (out.length >= (filter.limit ?? 20)) break;
    }
  } catch (err) {
    throw toBusinessError(err);
  }
  return out;
}
