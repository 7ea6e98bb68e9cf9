/**
 * The small pieces of what operators read: session outcomes, sizes and
 * durations in words, the device label, the worker's log lines and the
 * metrics address check.
 */
import { describe, expect, it } from 'vitest';
import { sessionOutcome } from '../../common/rules.js';
import { formatBytes, formatDuration } from '../../common/format.js';
import { deviceLabel, deviceTaskQueue } from '../../common/deviceQueue.js';
import { WorkerLogger, logWriter, parseLogFormat } from '../../workers/logFormat.js';
import { checkMetricsAddress } from '../../workers/runWorker.js';
import type { BundleState } from '../../common/session.js';

const of = (...states: BundleState[]) => sessionOutcome(states.map((state) => ({ state })));

describe('session outcome', () => {
  it('done, partial, failed, cancelled from the bundles', () => {
    expect(of('done', 'done')).toBe('done');
    expect(of('done', 'failed')).toBe('partial');
    expect(of('done', 'cancelled', 'notStarted')).toBe('partial');
    expect(of('failed', 'cancelled')).toBe('failed');
    expect(of('cancelled', 'notStarted')).toBe('cancelled');
    expect(of()).toBe('cancelled');
  });
});

describe('human units', () => {
  it('sizes and durations', () => {
    expect([formatBytes(512), formatBytes(1536), formatBytes(12.3 * 1024 * 1024)]).toEqual(['512 B', '1.50 KiB', '12.3 MiB']);
    expect([formatDuration(850), formatDuration(4200), formatDuration(185_000), formatDuration(7_260_000)]).toEqual([
      '850 ms',
      '4.2 s',
      '3 min 05 s',
      '2 h 01 min',
    ]);
  });

  it('the device of a task queue', () => {
    expect(deviceLabel(deviceTaskQueue('phone-1'))).toBe('phone-1');
    expect(deviceLabel('ohbackup')).toBe('ohbackup');
  });
});

describe('worker log lines', () => {
  const entry = (meta: Record<string, unknown>) => ({
    level: 'WARN' as const,
    message: 'Activity failed\nsecond line',
    timestampNanos: 1_796_120_000_000_000_000n,
    meta,
  });
  const lines = (format: 'text' | 'json', verbose: boolean, meta: Record<string, unknown>) => {
    const out: string[] = [];
    logWriter(format, verbose, (l) => out.push(l))(entry(meta));
    return out;
  };
  const failure = new Error('hook exited with 7\n    at somewhere (file.js:1:1)', { cause: new Error('cannot reach the database') });

  it('text: one line, noise dropped, errors as their message', () => {
    const [line, ...rest] = lines('text', false, { sdkComponent: 'worker', taskQueue: 'q', bundleName: 'com.a', error: failure, note: 'two words' });
    expect(rest).toEqual([]);
    expect(line).toBe(
      '2026-12-01T10:13:20.000Z WARN  Activity failed bundleName=com.a error="Error: hook exited with 7: cannot reach the database" note="two words"',
    );
  });

  it('json: one object a line, every field; stacks only when verbose', () => {
    const [plain] = lines('json', false, { taskQueue: 'q', error: failure });
    expect(JSON.parse(plain!)).toEqual({
      time: '2026-12-01T10:13:20.000Z',
      level: 'WARN',
      message: 'Activity failed',
      taskQueue: 'q',
      error: 'Error: hook exited with 7: cannot reach the database',
    });
    const [verbose] = lines('json', true, { error: failure });
    expect(JSON.parse(verbose!).error.stack).toContain('at ');
    expect(JSON.parse(verbose!).message).toBe('Activity failed\nsecond line');
  });

  it('the format setting: text or json, else refused by name', () => {
    expect(parseLogFormat(undefined)).toBe('text');
    expect(parseLogFormat('JSON')).toBe('json');
    expect(() => parseLogFormat('xml')).toThrow('OHBACKUP_LOG_FORMAT must be "text" or "json" (got "xml")');
  });
});

describe('OHBACKUP_METRICS_ADDRESS', () => {
  it('host:port, or refused naming the variable', () => {
    expect(checkMetricsAddress(undefined)).toBeUndefined();
    expect(checkMetricsAddress(' ')).toBeUndefined();
    for (const ok of ['127.0.0.1:9464', 'localhost:9464', '0.0.0.0:1', '[::1]:9464']) expect(checkMetricsAddress(ok)).toBe(ok);
    for (const bad of ['9464', 'localhost', ':9464', 'host:0', 'host:70000', 'http://host:9464'])
      expect(() => checkMetricsAddress(bad), bad).toThrow(/^OHBACKUP_METRICS_ADDRESS must be host:port/);
  });
});

describe('the worker logger', () => {
  it("a bundle child's failure is INFO (the session's 'bundle ended' line says it); another workflow's stays WARN", () => {
    const out: string[] = [];
    const logger = new WorkerLogger('WARN', 'json');
    // Capture through the logger's own writer: swap stderr's write for the call.
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (out.push(chunk), true)) as typeof process.stderr.write;
    try {
      logger.warn('Workflow failed', { workflowType: 'bundleBackupWorkflow' });
      logger.warn('Workflow failed', { workflowType: 'sessionWorkflow' });
    } finally {
      process.stderr.write = write;
    }
    expect(out.map((l) => (JSON.parse(l) as { meta?: unknown; workflowType: string }).workflowType)).toEqual(['sessionWorkflow']);
  });
});
