/**
 * The restic binary: $OHBACKUP_RESTIC, PATH, `$(go env GOPATH)/bin`, else
 * built once from its Go module (engine/goTool.ts), and refused when older
 * than MIN_RESTIC: `check --json` with a summary line arrived in 0.18.0, the
 * exit codes 10 (no repository) and 12 (wrong password) in 0.17.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { findGoTool, type GoTool } from '../goTool.js';

const run = promisify(execFile);

export const RESTIC_MODULE = 'github.com/restic/restic/cmd/restic@v0.18.1';
export const MIN_RESTIC = '0.18.0';

export const RESTIC: GoTool = {
  name: 'restic',
  module: RESTIC_MODULE,
  envVar: 'OHBACKUP_RESTIC',
  hint: `ohbackup needs restic ${MIN_RESTIC} or newer (distribution packages are often older).`,
};

export class ResticTooOld extends Error {}

export interface ResticBinary {
  path: string;
  version: string;
}

/** [major, minor, patch] of "0.18.1" (a suffix such as "-dev" ignored). */
export function parseVersion(v: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

export function versionAtLeast(v: string, min: string): boolean {
  const a = parseVersion(v);
  const b = parseVersion(min)!;
  if (!a) return false;
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}

/** The version a restic binary reports (`restic version --json`, else the text form). */
export async function resticVersion(binary: string): Promise<string> {
  const { stdout } = await run(binary, ['version', '--json'], { env: { PATH: process.env.PATH ?? '' } }).catch(() =>
    run(binary, ['version'], { env: { PATH: process.env.PATH ?? '' } }),
  );
  try {
    const parsed = JSON.parse(stdout) as { version?: unknown };
    if (typeof parsed.version === 'string') return parsed.version;
  } catch {
    // older releases print text only: "restic 0.14.0 compiled with go1.19.8 on linux/amd64"
  }
  const m = /restic\s+v?(\d+\.\d+\.\d+\S*)/.exec(stdout);
  if (!m) throw new ResticTooOld(`${binary} does not report a restic version (it printed: ${stdout.trim().slice(0, 120)}).`);
  return m[1]!;
}

const found = new Map<string, Promise<ResticBinary>>();

/** A restic binary of at least MIN_RESTIC; looked up (and built, when allowed) once per process. */
export function findRestic(opts: { build?: boolean; log?: (line: string) => void } = {}): Promise<ResticBinary> {
  const key = `${process.env.OHBACKUP_RESTIC ?? ''}|${opts.build !== false}`;
  let p = found.get(key);
  if (!p) {
    p = (async () => {
      const binary = await findGoTool(RESTIC, opts);
      const version = await resticVersion(binary);
      if (!versionAtLeast(version, MIN_RESTIC)) {
        throw new ResticTooOld(
          `${binary} is restic ${version}; ohbackup needs ${MIN_RESTIC} or newer. ` +
            `Build one with \`go install ${RESTIC_MODULE}\`, or name a newer binary with OHBACKUP_RESTIC=PATH.`,
        );
      }
      return { path: binary, version };
    })();
    found.set(key, p);
    p.catch(() => found.delete(key));
  }
  return p;
}
