/**
 * What workflows tell the worker's metrics (docs/operating.md "Metrics"):
 * through a sink, so nothing is counted again on replay, and the worker adds
 * Temporal's own snake_case labels (namespace, task_queue, workflow_type)
 * where the SDK's workflow meter would add camelCase ones. Types only.
 */
import type { Sinks } from '@temporalio/workflow';
import type { BundleState, SessionKind, SessionOutcome } from './session.js';

export interface BundleEndMetric {
  kind: SessionKind;
  device: string;
  bundleName: string;
  outcome: BundleState;
  /** The reference code it ended with, when it failed or was cancelled. */
  errorCode?: number;
  files: number;
  bytes: number;
  seconds: number;
  /** When it ended (epoch ms): a done bundle's last-success time. */
  endedAt: number;
}

export interface SessionEndMetric {
  kind: SessionKind;
  device: string;
  outcome: SessionOutcome;
  seconds: number;
}

export interface OhbackupSinks extends Sinks {
  ohbackupMetrics: {
    bundleEnded(m: BundleEndMetric): void;
    sessionEnded(m: SessionEndMetric): void;
  };
}
