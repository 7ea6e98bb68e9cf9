/**
 * Which repository a command or a scheduled run uses, from its `--repo`
 * value and the environment; never a password itself (only where it is:
 * a password file, or restic's own RESTIC_PASSWORD* settings, read by the
 * repository library from the environment).
 *
 *   --repo NAME, with OHBACKUP_REPOSITORY_<NAME> set: that alias (its
 *                password file OHBACKUP_REPOSITORY_<NAME>_PASSWORD_FILE);
 *                how a schedule names a repository: the worker resolves it
 *   --repo state: the embedded repository in the state folder
 *   --repo REPO:  any restic repository string
 *   no --repo:    OHBACKUP_REPOSITORY, else the state folder's repository
 */
import path from 'node:path';

/** The device name of snapshots when no `--device` names one (the snapshot's hostname). */
export const DEFAULT_SNAPSHOT_DEVICE = 'default';

/** `--repo state`: the embedded repository in the state folder. */
export const STATE_REPOSITORY_NAME = 'state';

export type RepositorySpec =
  /** The state folder's repository (its password file made there on first use). */
  { kind: 'state'; stateDir: string } | { kind: 'location'; repository: string; passwordFile?: string; alias?: string };

const ALIAS = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

function aliasVar(name: string): string {
  return `OHBACKUP_REPOSITORY_${name.toUpperCase()}`;
}

/** The repository a `--repo` value (or its absence) names, in this process's environment. */
export function resolveRepositorySpec(value: string | undefined, opts: { env?: NodeJS.ProcessEnv; stateDir: string; passwordFile?: string }): RepositorySpec {
  const env = opts.env ?? process.env;
  const given = value ?? (env.OHBACKUP_REPOSITORY || undefined);
  const withFile = (r: { repository: string; passwordFile?: string; alias?: string }): RepositorySpec => ({
    kind: 'location',
    ...r,
    ...(opts.passwordFile ? { passwordFile: path.resolve(opts.passwordFile) } : r.passwordFile ? { passwordFile: path.resolve(r.passwordFile) } : {}),
  });
  if (given === undefined || given === STATE_REPOSITORY_NAME) {
    return opts.passwordFile ? withFile({ repository: path.join(opts.stateDir, 'repository') }) : { kind: 'state', stateDir: opts.stateDir };
  }
  if (ALIAS.test(given) && env[aliasVar(given)]) {
    return withFile({ repository: env[aliasVar(given)]!, passwordFile: env[`${aliasVar(given)}_PASSWORD_FILE`] || undefined, alias: given });
  }
  return withFile({ repository: isLocalPath(given) ? path.resolve(given) : given });
}

/** A restic repository string that is a local folder (no `backend:` prefix). */
function isLocalPath(repository: string): boolean {
  return !/^[a-z0-9]+:/i.test(repository) || /^[A-Za-z]:[\\/]/.test(repository);
}

/**
 * Why a repository string may not travel (in a schedule, to a worker through
 * Temporal): it embeds credentials (`user:password@` of a URL). Undefined
 * when it may.
 */
export function travelProblem(repository: string): string | undefined {
  if (/\/\/[^/@\s]*:[^/@\s]*@/.test(repository) || /^sftp:[^/@\s]*:[^/@\s]*@/.test(repository)) {
    return 'it holds a user:password@; give the worker an alias instead (OHBACKUP_REPOSITORY_<NAME> in its environment) and pass --repo NAME';
  }
  return undefined;
}

/**
 * The repository a device's worker names `name` (a device-side run, whose
 * request carries only that name): an alias of this environment, nothing
 * else, so that no repository string or secret need travel to the device.
 */
export function resolveDeviceAlias(name: string, env: NodeJS.ProcessEnv = process.env): { repository: string; passwordFile?: string; alias: string } {
  if (!ALIAS.test(name)) throw new TypeError(`"${name}" is not a repository alias (a letter, then up to 63 letters, digits or "_")`);
  const spec = resolveRepositorySpec(name, { env: { ...env, OHBACKUP_REPOSITORY: undefined }, stateDir: '' });
  if (spec.kind !== 'location' || spec.alias === undefined)
    throw new Error(`this device has no repository "${name}": ${aliasVar(name)} is not set in its worker's environment`);
  return { repository: spec.repository, ...(spec.passwordFile ? { passwordFile: spec.passwordFile } : {}), alias: name };
}

/** The aliases this environment defines (names only, lower case): what a device's worker says it serves. */
export function repositoryAliasNames(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(env)
    .filter((k) => k.startsWith('OHBACKUP_REPOSITORY_') && !k.endsWith('_PASSWORD_FILE') && env[k] && ALIAS.test(k.slice('OHBACKUP_REPOSITORY_'.length)))
    .map((k) => k.slice('OHBACKUP_REPOSITORY_'.length).toLowerCase())
    .sort();
}
