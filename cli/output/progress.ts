/**
 * Progress of a run on stderr (stdout stays the result): one bar per bundle
 * on a TTY, else plain lines; with --json, `status` lines on stdout as well
 * (output/json.ts). What a bar counts and what the lines say is the command's
 * column spec: backup follows bytes against the capability file's estimate,
 * restore the files written against the bundle's total.
 */
import cliProgress from 'cli-progress';
import type { BundleOutcome } from '../../common/session.js';
import { printJsonProgress, type StatusLine } from './json.js';
import { endLine } from './results.js';

/** The events every run reports (client/runs/*: BackupProgressEvent, RestoreProgressEvent). */
export type ProgressEvent =
  | { type: 'start'; sessionId: string; bundles: string[] }
  | { type: 'begin'; bundleName: string }
  | { type: 'file'; bundleName: string }
  | { type: 'end'; outcome: BundleOutcome }
  | { type: 'notice'; message: string }
  /** A step after the bundles (e.g. storing into a repository): its own bar, or a line when it starts and ends. */
  | StepEvent
  /** A running bundle's send rate as its session says (watchRates): 0 is paused. */
  | RateEvent;

export type RateEvent = { type: 'rate'; bundleName: string; rate: number };

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

/** How far one bundle is: what its bar and the --json status lines show. */
export interface Amount {
  files: number;
  bytes: number;
  /** What the bundle will hold when done, when known. */
  totalFiles?: number;
  totalBytes?: number;
}

export interface ProgressColumns<E extends ProgressEvent> {
  /** The line a session's start prints (its ID and UI link: printed for every session, on a terminal or not). */
  startLine(e: Of<E, 'start'>): string;
  /** The plain line of a bundle's begin. */
  beginLine(e: Of<E, 'begin'>): string;
  /** What a bundle has to do, as it begins. */
  begin(e: Of<E, 'begin'>): Amount;
  /** A file arrived: how far the bundle is now. */
  file(e: Of<E, 'file'>, before: Amount): Amount;
  /** What a bar counts: 'bytes' (x of N bytes) or 'files' (x of N files). */
  counts: 'bytes' | 'files';
  /** The bar's size text, e.g. "1.2 MiB of 4.0 MiB" or "12 of 40 files". */
  size(a: Amount): string;
}

export interface ProgressReporter<E extends ProgressEvent> {
  onProgress(event: E): void;
  stop(): void;
}

interface Options {
  stream?: NodeJS.WriteStream;
  /** --json: stream status lines of this command on stdout. */
  json?: string;
}

export function progressReporter<E extends ProgressEvent>(columns: ProgressColumns<E>, opts: Options = {}): ProgressReporter<E> {
  const stream = opts.stream ?? process.stderr;
  const display = stream.isTTY ? barReporter(columns, stream) : lineReporter(columns, stream);
  const status = opts.json ? statusReporter(columns, opts.json) : undefined;
  return {
    onProgress(e) {
      display.onProgress(e);
      status?.onProgress(e);
    },
    stop() {
      status?.stop();
      display.stop();
    },
  };
}

function lineReporter<E extends ProgressEvent>(columns: ProgressColumns<E>, stream: NodeJS.WritableStream): ProgressReporter<E> {
  const say = (line: string | undefined) => line !== undefined && stream.write(`${line}\n`);
  const started = new Set<string>();
  return {
    onProgress(e) {
      if (e.type === 'start') say(columns.startLine(e as Of<E, 'start'>));
      else if (e.type === 'begin') say(columns.beginLine(e as Of<E, 'begin'>));
      else if (e.type === 'end') say(endLine(e.outcome));
      else if (e.type === 'notice') say(e.message);
      else if (e.type === 'step') {
        if (!started.has(e.step)) say(`${e.step}  ${e.status}`);
        started.add(e.step);
        if (e.done) say(`${e.step}  ${e.status}`);
      } else if (e.type === 'rate') say(e.rate === 0 ? `paused  ${e.bundleName} (rate 0)` : `resumed ${e.bundleName} (rate ${e.rate} files/s)`);
    },
    stop() {},
  };
}

/** Bundle names longer than this are cut in a bar (state and size must stay visible at 80 columns). */
const NAME_WIDTH = 24;
const PAUSED = 'paused (rate 0)';
const STATE_WIDTH = PAUSED.length;

/** `text` in pieces of at most `width` characters: a bar display turns line wrapping off, so a long line would be cut. */
export function hardWrap(text: string, width: number): string {
  if (width < 20) return text;
  return text
    .split('\n')
    .flatMap((l) => (l.length <= width ? [l] : (l.match(new RegExp(`.{1,${width}}`, 'g')) ?? [l])))
    .join('\n');
}

/**
 * One bar line: name, state and size first (a line wider than the terminal
 * is cut at its end), then the bar in what width is left, then the ETA.
 */
export function barLine(width: number, f: { name: string; nameWidth: number; state: string; size: string; progress: number; eta: string }): string {
  // A narrow terminal takes its room from the name first: state and size stay whole.
  const nameWidth = Math.max(8, Math.min(f.nameWidth, width - 3 - STATE_WIDTH - f.size.length));
  const name = f.name.length > nameWidth ? `${f.name.slice(0, nameWidth - 1)}…` : f.name.padEnd(nameWidth);
  const head = ` ${name} ${f.state.padEnd(STATE_WIDTH)} ${f.size}`;
  const tail = f.eta ? ` ${f.eta}` : '';
  const room = width - head.length - tail.length - 4;
  if (room < 5) return `${head}${tail}`.slice(0, width);
  const full = Math.round(Math.max(0, Math.min(1, f.progress)) * room);
  return `${head} |${'█'.repeat(full)}${'░'.repeat(room - full)}|${tail}`;
}

/** "ETA 6:53", "ETA 1:02:03": short, to leave the bar its room. */
function etaText(seconds: number | null): string {
  if (seconds === null) return '';
  const s = Math.round(seconds);
  const mmss = `${Math.floor((s % 3600) / 60)}:${String(s % 60).padStart(2, '0')}`;
  return `ETA ${s >= 3600 ? `${Math.floor(s / 3600)}:${mmss.padStart(5, '0')}` : mmss}`;
}

function barReporter<E extends ProgressEvent>(columns: ProgressColumns<E>, stream: NodeJS.WriteStream): ProgressReporter<E> {
  const width = () => stream.columns || 80;
  interface BarState {
    bar: cliProgress.SingleBar;
    amount: Amount;
    state: string;
    started: number;
  }
  let nameWidth = 12;
  const bars = new Map<string, BarState>();
  // Steps after the bundles (storing into a repository): a bar each, its status as the size.
  const steps = new Map<string, { bar: cliProgress.SingleBar; fraction: number; status: string; done: boolean }>();
  const multibar = new cliProgress.MultiBar(
    {
      stream,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
      format: (_options, params, payload: { name?: string; step?: string }) => {
        const st = payload.step !== undefined ? steps.get(payload.step) : undefined;
        if (st)
          // The step's name whole, its figures after the bar (cut at the line's end when long).
          return barLine(params.maxWidth || width(), {
            name: payload.step ?? '',
            nameWidth: Math.max(nameWidth, payload.step?.length ?? 0),
            state: st.done ? 'done' : 'storing',
            size: '',
            progress: st.fraction,
            eta: st.status,
          });
        const b = bars.get(payload.name ?? '');
        if (!b) return '';
        const total = columns.counts === 'bytes' ? b.amount.totalBytes : b.amount.totalFiles;
        const done = columns.counts === 'bytes' ? b.amount.bytes : b.amount.files;
        const running = b.state === 'running' || b.state === PAUSED;
        const eta = running && total ? remaining(Date.now() - b.started, done / total) : null;
        return barLine(params.maxWidth || width(), {
          name: payload.name ?? '',
          nameWidth,
          state: b.state,
          size: columns.size(b.amount),
          progress: running ? (total ? done / total : 0) : 1,
          eta: etaText(eta),
        });
      },
    },
    cliProgress.Presets.shades_classic,
  );
  let stopped = false;
  // Before the first bar the display is not drawing: write directly (wrapped by the terminal as usual).
  const say = (line: string) => (bars.size + steps.size === 0 ? stream.write(`${line}\n`) : multibar.log(`${hardWrap(line, width())}\n`));
  return {
    onProgress(e) {
      if (stopped) return;
      if (e.type === 'start') {
        nameWidth = Math.min(NAME_WIDTH, Math.max(...e.bundles.map((b) => b.length)));
        say(columns.startLine(e as Of<E, 'start'>));
      } else if (e.type === 'begin') {
        const amount = columns.begin(e as Of<E, 'begin'>);
        const bar = multibar.create(1, 0, { name: e.bundleName });
        bars.set(e.bundleName, { bar, amount, state: 'running', started: Date.now() });
      } else if (e.type === 'file') {
        const b = bars.get(e.bundleName);
        if (!b) return;
        b.amount = columns.file(e as Of<E, 'file'>, b.amount);
        b.bar.update(0, { name: e.bundleName });
      } else if (e.type === 'end') {
        const b = bars.get(e.outcome.bundleName);
        if (!b) return void say(endLine(e.outcome));
        const o = e.outcome;
        b.amount = { ...b.amount, files: o.files, bytes: o.bytes, ...(o.state === 'done' ? { totalBytes: o.bytes, totalFiles: o.files } : {}) };
        b.state = o.state === 'done' ? 'done' : `${o.state} ${o.error?.code ?? ''}`.trim();
        b.bar.update(1, { name: o.bundleName });
      } else if (e.type === 'step') {
        let st = steps.get(e.step);
        if (!st) {
          st = { bar: multibar.create(1, 0, { step: e.step }), fraction: 0, status: '', done: false };
          steps.set(e.step, st);
        }
        Object.assign(st, { fraction: e.fraction, status: e.status, done: Boolean(e.done) });
        st.bar.update(0, { step: e.step });
      } else if (e.type === 'notice') say(e.message);
      else if (e.type === 'rate') {
        const b = bars.get(e.bundleName);
        if (b && (b.state === 'running' || b.state === PAUSED)) b.state = e.rate === 0 ? PAUSED : 'running';
        b?.bar.update(0, { name: e.bundleName });
      }
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      multibar.stop();
    },
  };
}

/**
 * Asks the session every `everyMs` for the send rate of each running bundle
 * (another tool may pause it: `ohbackup rate … 0`) and reports a change as a
 * `rate` event. Returns a function that stops asking.
 */
export function watchRates(
  ask: (bundles: string[]) => Promise<Map<string, number>>,
  running: () => string[],
  report: (e: RateEvent) => void,
  everyMs = 2000,
): () => void {
  const known = new Map<string, number>();
  let busy = false;
  const timer = setInterval(() => {
    const names = running();
    if (busy || !names.length) return;
    busy = true;
    ask(names)
      .then((rates) => {
        for (const [bundleName, rate] of rates) {
          const before = known.get(bundleName);
          known.set(bundleName, rate);
          // The first answer reports only a pause; later ones every change.
          if (before === undefined ? rate === 0 : before !== rate) report({ type: 'rate', bundleName, rate });
        }
      })
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Seconds left at this pace: null until some progress is made. */
function remaining(elapsedMs: number, fraction: number): number | null {
  if (!(fraction > 0) || fraction >= 1) return fraction >= 1 ? 0 : null;
  return Math.round(((elapsedMs / 1000) * (1 - fraction)) / fraction);
}

/** --json: the run's totals over every bundle, streamed as `status` lines. */
function statusReporter<E extends ProgressEvent>(columns: ProgressColumns<E>, kind: string): ProgressReporter<E> {
  const out = printJsonProgress(kind);
  const amounts = new Map<string, Amount & { ended: boolean }>();
  let names: string[] = [];
  const started = Date.now();
  const status = (): StatusLine => {
    let files = 0;
    let bytes = 0;
    let totalFiles: number | null = 0;
    let totalBytes: number | null = 0;
    for (const n of names) {
      const a = amounts.get(n);
      files += a?.files ?? 0;
      bytes += a?.bytes ?? 0;
      totalFiles = a?.totalFiles !== undefined && totalFiles !== null ? totalFiles + a.totalFiles : null;
      totalBytes = a?.totalBytes !== undefined && totalBytes !== null ? totalBytes + a.totalBytes : null;
    }
    const [done, total] = columns.counts === 'bytes' ? [bytes, totalBytes] : [files, totalFiles];
    const percentDone = total ? Math.min(1, done / total) : total === 0 ? 1 : null;
    return {
      percentDone,
      bytesDone: bytes,
      totalBytes,
      filesDone: files,
      totalFiles,
      secondsRemaining: percentDone === null ? null : remaining(Date.now() - started, percentDone),
      bundlesDone: [...amounts.values()].filter((a) => a.ended).length,
      totalBundles: names.length,
    };
  };
  return {
    onProgress(e) {
      if (e.type === 'start') names = [...new Set([...names, ...e.bundles])];
      else if (e.type === 'begin') amounts.set(e.bundleName, { ...columns.begin(e as Of<E, 'begin'>), ended: false });
      else if (e.type === 'file') {
        const a = amounts.get(e.bundleName);
        if (a) amounts.set(e.bundleName, { ...columns.file(e as Of<E, 'file'>, a), ended: false });
      } else if (e.type === 'end') {
        const o = e.outcome;
        const a = amounts.get(o.bundleName);
        amounts.set(o.bundleName, { ...a, files: o.files, bytes: o.bytes, totalFiles: o.files, totalBytes: o.bytes, ended: true });
      } else return;
      out.update(status());
    },
    stop: () => out.flush(),
  };
}
