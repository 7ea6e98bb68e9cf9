/**
 * ohbackup's own Prometheus metrics, every one defined here (docs/operating.md
 * "Metrics" lists them). Emitted on the runtime's meter with explicit labels
 * in Temporal's snake_case (namespace, task_queue, workflow_type,
 * activity_type), beside ours (kind, device, outcome, error_code,
 * bundle_name, repository). Workflows reach them through the ohbackupMetrics sink.
 */
import type { MetricTags } from '@temporalio/common';
import { Runtime, type InjectedSinks } from '@temporalio/worker';
import type { WorkflowInfo } from '@temporalio/workflow';
import type { Info as ActivityInfo } from '@temporalio/activity';
import { deviceLabel } from '../common/deviceQueue.js';
import type { BundleEndMetric, OhbackupSinks, SessionEndMetric } from '../common/metrics.js';

function instruments() {
  const m = Runtime.instance().metricMeter;
  return {
    sessions: m.createCounter('ohbackup_sessions', 'sessions', 'sessions ended, by kind, device and outcome'),
    sessionSeconds: m.createHistogram('ohbackup_session_duration_seconds', 'float', 's', 'sessions from start to release, by kind, device and outcome'),
    bundles: m.createCounter('ohbackup_bundles', 'bundles', 'bundles ended (refused ones too), by kind, device, outcome and error code'),
    bundleSeconds: m.createHistogram('ohbackup_bundle_duration_seconds', 'float', 's', 'bundles from start to end, by kind, device and outcome'),
    bundleFiles: m.createCounter('ohbackup_bundle_files', 'files', 'files handed over by ended bundles, by kind, device and outcome'),
    bundleBytes: m.createCounter('ohbackup_bundle_bytes', 'bytes', 'bytes handed over by ended bundles, by kind, device and outcome'),
    lastSuccess: m.createGauge(
      'ohbackup_last_success_timestamp_seconds',
      'float',
      's',
      'when a bundle last ended done (Unix time), by kind, device and bundle: for staleness and absent() alerts',
    ),
    handedFiles: m.createCounter('ohbackup_files_handed_over', 'files', 'files handed over to tools, by device'),
    handedBytes: m.createCounter('ohbackup_bytes_handed_over', 'bytes', 'bytes handed over to tools, by device'),
    toolBegunWaitSeconds: m.createHistogram(
      'ohbackup_tool_begun_wait_seconds',
      'float',
      's',
      "a backup bundle's wait for its tool's begun mark before the hand-over, by device and how it ended (ended_by: mark, ask, bound)",
    ),
    verificationFailures: m.createCounter('ohbackup_restore_verification_failures', 'bundles', 'restores refused by verification, by device'),
    repositoryBytesAdded: m.createCounter(
      'ohbackup_repository_bytes_added',
      'bytes',
      "bytes scheduled runs added to their repository (restic's data_added, after deduplication), by device and repository",
    ),
  };
}

let made: ReturnType<typeof instruments> | undefined;
/** Made once the worker's runtime (with its exporter) is installed. */
export const metrics = () => (made ??= instruments());

function workflowTags(info: WorkflowInfo): MetricTags {
  return { namespace: info.namespace, task_queue: info.taskQueue, workflow_type: info.workflowType };
}

/** The labels of an activity's metrics. */
export function activityTags(info: ActivityInfo): MetricTags {
  return { namespace: info.namespace, task_queue: info.taskQueue, activity_type: info.activityType, device: deviceLabel(info.taskQueue) };
}

function bundleEnded(info: WorkflowInfo, e: BundleEndMetric): void {
  const m = metrics();
  const tags = { ...workflowTags(info), kind: e.kind, device: e.device, outcome: e.outcome };
  m.bundles.add(1, { ...tags, error_code: e.errorCode === undefined ? '' : String(e.errorCode) });
  m.bundleSeconds.record(e.seconds, tags);
  m.bundleFiles.add(e.files, tags);
  m.bundleBytes.add(e.bytes, tags);
  if (e.outcome === 'done') m.lastSuccess.set(e.endedAt / 1000, { ...workflowTags(info), kind: e.kind, device: e.device, bundle_name: e.bundleName });
}

function sessionEnded(info: WorkflowInfo, e: SessionEndMetric): void {
  const m = metrics();
  const tags = { ...workflowTags(info), kind: e.kind, device: e.device, outcome: e.outcome };
  m.sessions.add(1, tags);
  m.sessionSeconds.record(e.seconds, tags);
}

/** The worker's side of the ohbackupMetrics sink: never called on replay, so each end counts once. */
export function metricsSinks(): InjectedSinks<OhbackupSinks> {
  return {
    ohbackupMetrics: {
      bundleEnded: { fn: bundleEnded, callDuringReplay: false },
      sessionEnded: { fn: sessionEnded, callDuringReplay: false },
    },
  };
}
