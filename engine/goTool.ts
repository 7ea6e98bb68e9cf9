/**
 * Finds a command-line tool that is published as a Go module (the Temporal
 * CLI, restic, the tests' S3 gateway): a binary named explicitly by an
 * environment variable, else on PATH, else in `$(go env GOPATH)/bin`, else —
 * when allowed — built once with `go install MODULE@VERSION`. One build per
 * module per process: concurrent callers wait for the same build.
 */
import { execFile, spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface GoTool {
  /** The binary's name (`temporal`, `restic`). */
  name: string;
  /** What to build: `module/path/cmd/name@vX.Y.Z`. */
  module: string;
  /** An environment variable that names the binary explicitly (checked first; an unusable one is an error). */
  envVar?: string;
  /** A sentence on other ways to get the tool, appended to the "not found" message. */
  hint?: string;
}

export interface FindGoToolOptions {
  /** false: never build (default true). */
  build?: boolean;
  log?: (line: string) => void;
  /** The environment to read `envVar` and PATH from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export class GoToolMissing extends Error {}

export async function isExecutable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
}

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && (await isExecutable(path.join(dir, name)))) return path.join(dir, name);
  }
  return undefined;
}

/** `$(go env GOPATH)/bin`, or undefined when there is no Go toolchain. */
export async function goBinDir(): Promise<string | undefined> {
  try {
    const { stdout } = await run('go', ['env', 'GOPATH']);
    return path.join(stdout.trim().split(path.delimiter)[0]!, 'bin');
  } catch {
    return undefined;
  }
}

/** Every place the tool may already be, in order, without building it. */
export async function locateGoTool(tool: GoTool, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const named = tool.envVar ? env[tool.envVar] : undefined;
  if (named) {
    if (await isExecutable(named)) return named;
    throw new GoToolMissing(`${tool.envVar}=${named} is not an executable file.`);
  }
  const fromPath = await onPath(tool.name, env);
  if (fromPath) return fromPath;
  const bin = await goBinDir();
  if (bin && (await isExecutable(path.join(bin, tool.name)))) return path.join(bin, tool.name);
  return undefined;
}

const builds = new Map<string, Promise<string>>();

/** The path of a usable binary of `tool`; builds it once when allowed and needed. */
export async function findGoTool(tool: GoTool, opts: FindGoToolOptions = {}): Promise<string> {
  const log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  const found = await locateGoTool(tool, opts.env ?? process.env);
  if (found) return found;
  const bin = await goBinDir();
  if (!bin || opts.build === false) {
    throw new GoToolMissing(
      `${tool.name} was not found on PATH or in $(go env GOPATH)/bin${bin ? '' : ', and there is no Go toolchain to build it'}.\n` +
        `Install it (with Go: go install ${tool.module})${tool.envVar ? `, or name a binary with ${tool.envVar}=PATH` : ''}.` +
        (tool.hint ? ` ${tool.hint}` : ''),
    );
  }
  let build = builds.get(tool.module);
  if (!build) {
    build = buildOnce(tool, bin, log);
    builds.set(tool.module, build);
    build.catch(() => builds.delete(tool.module));
  }
  return build;
}

async function buildOnce(tool: GoTool, bin: string, log: (line: string) => void): Promise<string> {
  log(`Building ${tool.name} once: go install ${tool.module} (this takes a few minutes) ...`);
  const started = Date.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('go', ['install', tool.module], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new GoToolMissing(`go install ${tool.module} failed (exit ${code}).`))));
  });
  log(`Built ${tool.name} in ${Math.round((Date.now() - started) / 1000)} s.`);
  return path.join(bin, tool.name);
}
