/**
 * The environment of a restic child: where the repository and its secrets
 * reach restic. The repository string and the password travel only in the
 * child's environment (RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE /
 * RESTIC_PASSWORD_COMMAND / RESTIC_PASSWORD), so `ps` shows neither; S3 keys
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the like pass through from
 * the caller's environment untouched.
 */
import { NoPassword } from './errors.js';

export interface RepositoryLocation {
  /** Any restic repository string: a local path, `s3:…`, `sftp:…`, `rest:…`, `azure:…`, … */
  repository: string;
  /** A file holding the password (wins over the environment's password settings). */
  passwordFile?: string;
  /** Where RESTIC_PASSWORD* and the back end's credentials are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

const PASSWORD_VARS = ['RESTIC_PASSWORD_FILE', 'RESTIC_PASSWORD_COMMAND', 'RESTIC_PASSWORD'] as const;
/** Settings of the caller's that would point restic somewhere else, or that ohbackup sets itself. */
const DROPPED = [
  'RESTIC_REPOSITORY',
  'RESTIC_REPOSITORY_FILE',
  ...PASSWORD_VARS,
  'RESTIC_FROM_REPOSITORY',
  'RESTIC_FROM_REPOSITORY_FILE',
  'RESTIC_FROM_PASSWORD_FILE',
  'RESTIC_FROM_PASSWORD_COMMAND',
  'RESTIC_FROM_PASSWORD',
];

/** Which password setting applies, in restic's order of precedence (an explicit file first). */
export function passwordSetting(loc: RepositoryLocation): { name: (typeof PASSWORD_VARS)[number]; value: string } {
  if (loc.passwordFile) return { name: 'RESTIC_PASSWORD_FILE', value: loc.passwordFile };
  const env = loc.env ?? process.env;
  for (const name of PASSWORD_VARS) {
    const value = env[name];
    if (value) return { name, value };
  }
  throw new NoPassword(
    'No repository password is configured: set RESTIC_PASSWORD_FILE (a file holding it), RESTIC_PASSWORD_COMMAND or RESTIC_PASSWORD, or give a password file.',
  );
}

/**
 * The child's environment for `loc`; with `from`, also the source of a
 * `restic copy` (RESTIC_FROM_REPOSITORY and its password setting).
 */
export function resticEnvironment(loc: RepositoryLocation, extra: Record<string, string> = {}, from?: RepositoryLocation): NodeJS.ProcessEnv {
  const base = { ...(loc.env ?? process.env) };
  for (const name of DROPPED) delete base[name];
  const pw = passwordSetting(loc);
  const env: NodeJS.ProcessEnv = { ...base, ...extra, RESTIC_REPOSITORY: loc.repository, [pw.name]: pw.value };
  if (from) {
    const fromPw = passwordSetting(from);
    env.RESTIC_FROM_REPOSITORY = from.repository;
    env[fromPw.name.replace('RESTIC_', 'RESTIC_FROM_')] = fromPw.value;
    // A source on another S3 service with other keys is not supported by restic's copy: both use AWS_*.
  }
  return env;
}
