/**
 * Repository aliases of a device's worker: `OHBACKUP_REPOSITORY_<NAME>` is the
 * restic repository string and `OHBACKUP_REPOSITORY_<NAME>_PASSWORD_FILE` the
 * file holding its password; the back end's own credentials (AWS_* for S3)
 * come from the same environment. Read only where restic runs (the worker):
 * a device run names its repository by alias, so no repository credential
 * ever travels through Temporal.
 */

const PREFIX = 'OHBACKUP_REPOSITORY_';
const PASSWORD_SUFFIX = '_PASSWORD_FILE';

export interface RepositoryAlias {
  /** The alias as given (e.g. `offsite`). */
  name: string;
  repository: string;
  passwordFile: string;
}

/** An alias name: letters, digits and `_`, as an environment variable's name allows; matched case-insensitively. */
export function aliasVariable(name: string): string {
  if (!/^[A-Za-z0-9_]{1,64}$/.test(name)) throw new TypeError(`"${name}" is not a repository alias (1-64 letters, digits or "_")`);
  return `${PREFIX}${name.toUpperCase()}`;
}

/** The alias's repository and password file; an Error naming the variables looked for when either is missing. */
export function resolveRepositoryAlias(name: string, env: NodeJS.ProcessEnv = process.env): RepositoryAlias {
  const variable = aliasVariable(name);
  const repository = env[variable];
  const passwordFile = env[`${variable}${PASSWORD_SUFFIX}`];
  if (!repository || !passwordFile) {
    const missing = [!repository && variable, !passwordFile && `${variable}${PASSWORD_SUFFIX}`].filter(Boolean).join(' and ');
    throw new Error(`this device has no repository "${name}": ${missing} ${missing.includes(' and ') ? 'are' : 'is'} not set in its worker's environment`);
  }
  return { name, repository, passwordFile };
}

/** The aliases configured in `env` (names only, lower case): a repository string and its password file. */
export function repositoryAliasNames(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(env)
    .filter((k) => k.startsWith(PREFIX) && !k.endsWith(PASSWORD_SUFFIX) && env[k] && env[`${k}${PASSWORD_SUFFIX}`])
    .map((k) => k.slice(PREFIX.length).toLowerCase())
    .sort();
}
