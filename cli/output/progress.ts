/**
 * Progress of a run on stderr (stdout stays the result): one bar per bundle
 * on a TTY, else plain lines. What a bar counts and what the lines say is the
 * command's column spec: backup follows bytes against the capability file's
 * estimate, restore the files written against the bundle's total.
 */
import cliProgress from 'cli-progress';
import type { BundleOutcome } from '../../common/session.js';
import { endLine } from './results.js';

/** The events every run reports (client/runs/*: BackupProgressEvent, RestoreProgressEvent). */
export type ProgressEvent =
  | { type: 'start'; sessionId: string; bundles: string[] }
  | { type: 'begin'; bundleName: string }
  | { type: 'file'; bundleName: string }
  | { type: 'end'; outcome: BundleOutcome }
  | { type: 'notice'; message: string }
  /** A step after the bundles (e.g. storing into a repository): its own bar, or a line when it starts and ends. */
  | StepEvent;

export interface StepEvent {
  type: 'step';
  /** The bar's label, e.g. "repository". */
  step: string;
  /** 0..1 */
  fraction: number;
  /** What the bar shows after it (rate, bytes), and the line printed when it ends. */
  status: string;
  done?: boolean;
}

type Of<E, T> = Extract<E, { type: T }>;
type Fields = Record<string, string | number>;

export interface ProgressColumns<E extends ProgressEvent> {
  /** cli-progress format of a bundle's bar: ` {bundle} |{bar}| ` and the fields below. */
  barFormat: string;
  /** The line a session's start prints; `onBar`: above the bars (undefined: none). */
  startLine(e: Of<E, 'start'>, onBar: boolean): string | undefined;
  /** The plain line of a bundle's begin. */
  beginLine(e: Of<E, 'begin'>): string;
  /** A new bar: its total and first fields. */
  begin(e: Of<E, 'begin'>): { total: number; fields: Fields };
  /** A file arrived: the bar's value and fields. */
  file(e: Of<E, 'file'>, total: number): { value: number; fields?: Fields };
  /** The bundle ended: the bar's last value and fields. */
  end(o: BundleOutcome, total: number): { value: number; fields: Fields };
}

export interface ProgressReporter<E extends ProgressEvent> {
  onProgress(event: E): void;
  stop(): void;
}

export function progressReporter<E extends ProgressEvent>(columns: ProgressColumns<E>, stream: NodeJS.WriteStream = process.stderr): ProgressReporter<E> {
  return stream.isTTY ? barReporter(columns, stream) : lineReporter(columns, stream);
}

function lineReporter<E extends ProgressEvent>(columns: ProgressColumns<E>, stream: NodeJS.WritableStream): ProgressReporter<E> {
  const say = (line: string | undefined) => line !== undefined && stream.write(`${line}\n`);
  const started = new Set<string>();
  return {
    onProgress(e) {
      if (e.type === 'start') say(columns.startLine(e as Of<E, 'start'>, false));
      else if (e.type === 'begin') say(columns.beginLine(e as Of<E, 'begin'>));
      else if (e.type === 'end') say(endLine(e.outcome));
      else if (e.type === 'notice') say(e.message);
      else if (e.type === 'step') {
        if (!started.has(e.step)) say(`${e.step}  ${e.status}`);
        started.add(e.step);
        if (e.done) say(`${e.step}  ${e.status}`);
      }
    },
    stop() {},
  };
}

function barReporter<E extends ProgressEvent>(columns: ProgressColumns<E>, stream: NodeJS.WriteStream): ProgressReporter<E> {
  const multibar = new cliProgress.MultiBar(
    { stream, format: columns.barFormat, hideCursor: true, clearOnComplete: false, stopOnComplete: false, fps: 10 },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  let width = 0;
  return {
    onProgress(e) {
      if (e.type === 'start') {
        width = Math.max(...e.bundles.map((b) => b.length));
        const line = columns.startLine(e as Of<E, 'start'>, true);
        if (line !== undefined) multibar.log(`${line}\n`);
      } else if (e.type === 'begin') {
        const { total, fields } = columns.begin(e as Of<E, 'begin'>);
        bars.set(e.bundleName, multibar.create(total, 0, { bundle: e.bundleName.padEnd(width), ...fields }));
      } else if (e.type === 'file') {
        const bar = bars.get(e.bundleName);
        if (!bar) return;
        const { value, fields } = columns.file(e as Of<E, 'file'>, bar.getTotal());
        bar.update(value, fields);
      } else if (e.type === 'end') {
        const bar = bars.get(e.outcome.bundleName);
        if (!bar) return void multibar.log(`${endLine(e.outcome)}\n`);
        const { value, fields } = columns.end(e.outcome, bar.getTotal());
        bar.update(value, fields);
      } else if (e.type === 'notice') multibar.log(`${e.message}\n`);
      else if (e.type === 'step') {
        let bar = bars.get(`step:${e.step}`);
        if (!bar) {
          bar = multibar.create(1000, 0, { step: e.step.padEnd(width), status: '' }, { format: ' {step} |{bar}| {status}' });
          bars.set(`step:${e.step}`, bar);
        }
        bar.update(Math.round(Math.min(1, Math.max(0, e.fraction)) * 1000), { status: e.status });
      }
    },
    stop: () => multibar.stop(),
  };
}
