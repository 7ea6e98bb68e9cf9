/**
 * The embedded default: a local repository in ohbackup's state folder
 * (`<state>/repository`), with a random password in `<state>/repository.password`
 * (0600, made once), so a new user needs no setup. Made on first use; two
 * processes making it at once end up with the same one.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { RepositoryError } from './errors.js';
import { Repository, type RepositoryOptions } from './repository.js';

export const STATE_REPOSITORY = 'repository';
export const STATE_PASSWORD = 'repository.password';

/** The state folder's repository options (the password file made when missing). */
export async function stateRepositoryOptions(stateDir: string, extra: Omit<RepositoryOptions, 'repository' | 'passwordFile'> = {}): Promise<RepositoryOptions> {
  await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const passwordFile = path.join(stateDir, STATE_PASSWORD);
  try {
    await fsp.writeFile(passwordFile, randomBytes(32).toString('hex'), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = await fsp.stat(passwordFile);
  if ((st.mode & 0o077) !== 0) throw new RepositoryError(`${passwordFile} can be read by others (mode ${(st.mode & 0o777).toString(8)}): make it 0600.`);
  return { ...extra, repository: path.join(stateDir, STATE_REPOSITORY), passwordFile };
}

/** Opens the state folder's repository, creating it on first use. */
export async function openStateRepository(stateDir: string, extra: Omit<RepositoryOptions, 'repository' | 'passwordFile'> = {}): Promise<Repository> {
  const opts = await stateRepositoryOptions(stateDir, extra);
  const exists = await fsp.stat(path.join(opts.repository, 'config')).then(
    () => true,
    () => false,
  );
  if (!exists) {
    try {
      return await Repository.init(opts);
    } catch (err) {
      if (!(err instanceof RepositoryError && /already/.test(err.message))) throw err;
    }
  }
  return Repository.open(opts);
}
