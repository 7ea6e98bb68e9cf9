/**
 * Finds the `temporal` CLI that runs the embedded dev server: on PATH, then in
 * `$(go env GOPATH)/bin`, else builds it once with `go install` (v1.5.1: newer
 * tags carry a replace directive and cannot be `go install`ed).
 */
import { execFile, spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

async function executable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
}

async function onPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && (await executable(path.join(dir, name)))) return path.join(dir, name);
  }
  return undefined;
}

async function goBin(): Promise<string | undefined> {
  try {
    const { stdout } = await run('go', ['env', 'GOPATH']);
    return path.join(stdout.trim().split(path.delimiter)[0]!, 'bin');
  } catch {
    return undefined;
  }
}

export class TemporalCliMissing extends Error {}

/** The path of a usable `temporal` binary; builds it when allowed and needed. */
export async function findTemporalCli(opts: { build?: boolean; log?: (line: string) => void } = {}): Promise<string> {
  const log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  if (process.env.TEMPORAL_CLI && (await executable(process.env.TEMPORAL_CLI))) return process.env.TEMPORAL_CLI;
  const fromPath = await onPath('temporal');
  if (fromPath) return fromPath;
  const bin = await goBin();
  if (bin && (await executable(path.join(bin, 'temporal')))) return path.join(bin, 'temporal');
  if (!bin || opts.build === false) {
    throw new TemporalCliMissing(
      'The Temporal CLI (`temporal`) was not found on PATH or in $(go env GOPATH)/bin, and there is no Go toolchain to build it.\n' +
        `Either install it (with Go: go install ${TEMPORAL_CLI_MODULE}; or from https://docs.temporal.io/cli), ` +
        'or point ohbackup at a running Temporal service with TEMPORAL_ADDRESS=host:port and run `ohbackup worker`.',
    );
  }
  log(`Building the Temporal CLI once: go install ${TEMPORAL_CLI_MODULE} (this takes a few minutes) ...`);
  const started = Date.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('go', ['install', TEMPORAL_CLI_MODULE], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new TemporalCliMissing(`go install ${TEMPORAL_CLI_MODULE} failed (exit ${code})`))));
  });
  log(`Built the Temporal CLI in ${Math.round((Date.now() - started) / 1000)} s.`);
  return path.join(bin, 'temporal');
}
