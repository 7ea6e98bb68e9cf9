/**
 * A bundle child tells its own worker process that the tool's begun mark
 * arrived (its toolBegun query, common/messages.ts): through a sink, so no
 * command and no history, and the pack activity waiting in that process
 * (activities/toolBegunMarks.ts) wakes at once instead of asking the child
 * over and over. Types only.
 */
import type { Sinks } from '@temporalio/workflow';

export interface ToolBegunSinks extends Sinks {
  ohbackupToolBegun: {
    /** The tool has run onBundleBegin; `sendRate` is the bundle's rate then (any rate it set there included). */
    marked(sendRate: number): void;
    /** The bundle's rate changed after the mark (updateSendRate): a mark not yet taken carries the new one. */
    rateChanged(sendRate: number): void;
  };
}
