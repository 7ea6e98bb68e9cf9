/** Reading a command's `--json` output (docs/cli.md, "JSON output"): JSON Lines, checked against the published schemas. */
import { execFile, spawn } from 'node:child_process';
import { checkJsonOutput, type JsonCommand } from '../../cli/output/schemas.js';

/** The last line of a command's --json stdout (its summary or error), after every line is checked against its schema. */
export function jsonSummary<T = Record<string, unknown>>(stdout: string, command: JsonCommand): T {
  const lines = checkJsonOutput(command, stdout);
  return lines[lines.length - 1] as T;
}

/** The command line as a child process whose output is collected; `waitFor` resolves once its output matches. */
export function spawnCli(cli: string, args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  child.stdout.on('data', (d: Buffer) => ((stdout += d.toString()), wake()));
  child.stderr.on('data', (d: Buffer) => ((stderr += d.toString()), wake()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => (resolve(code ?? (signal ? -1 : null)), wake())));
  const waitFor = async (re: RegExp, where: () => string = () => stdout + stderr): Promise<RegExpMatchArray> => {
    for (;;) {
      const m = where().match(re);
      if (m) return m;
      if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before ${re}:\n${stdout}\n${stderr}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { child, exited, waitFor, out: () => stdout, err: () => stderr };
}

/** Runs the command line to its end. */
export function runCli(cli: string, args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * A backup's or restore's output off a terminal: each session (a restore of a
 * chain runs one per set) and its UI link are named on stderr as it starts,
 * the first before any bundle begins; without --json, the result ends with the
 * totals line (elapsed time and throughput). Returns the sessions' IDs.
 */
export function expectStartAndTotals(run: { stdout: string; stderr: string }, opts: { json: boolean }): string[] {
  const starts = [...run.stderr.matchAll(/^Session (ohbackup-[a-z]+-\S+): .*\nTemporal UI {2}(http\S+)$/gm)];
  if (!starts.length) throw new Error(`no session and UI link on stderr:\n${run.stderr}`);
  for (const [, sessionId, uiUrl] of starts)
    if (!uiUrl!.endsWith(`/workflows/${sessionId}`)) throw new Error(`the UI link ${uiUrl} is not session ${sessionId}'s`);
  const firstBegin = run.stderr.search(/^(begin|done|failed|cancelled) /m);
  if (firstBegin !== -1 && firstBegin < starts[0]!.index) throw new Error(`the session line came after a bundle began:\n${run.stderr}`);
  if (!opts.json && !/^Total {8}.* in \d[\d.]* (ms|s|min \d\d s|h \d\d min), [\d.]+ (B|KiB|MiB|GiB|TiB)\/s$/m.test(run.stdout))
    throw new Error(`no totals line with elapsed time and throughput:\n${run.stdout}`);
  return starts.map((m) => m[1]!);
}
