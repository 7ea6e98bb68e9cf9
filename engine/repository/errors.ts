/**
 * What can go wrong with a repository, as classes a caller can tell apart.
 * Messages name the repository by its redacted string (no user:password of a
 * URL) and never carry a password or a key.
 */

export class RepositoryError extends Error {
  /** restic's exit code, when restic said so. */
  readonly exitCode?: number;
  constructor(message: string, exitCode?: number) {
    super(message);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** No repository at that location (restic exit 10, or an S3 bucket that does not exist). */
export class RepositoryNotFound extends RepositoryError {}

/** The password does not open the repository (restic exit 12). */
export class WrongPassword extends RepositoryError {}

/** No password source is configured (RESTIC_PASSWORD_FILE / _COMMAND / RESTIC_PASSWORD or a password file option). */
export class NoPassword extends RepositoryError {}

/** Another process holds a lock that conflicts (restic exit 11). */
export class RepositoryLocked extends RepositoryError {}

/** A snapshot ID (or `latest`) that names no snapshot of ohbackup's, or names several. */
export class SnapshotNotFound extends RepositoryError {}

/** A backup set or a stored snapshot that does not match its own index. */
export class SetMismatch extends RepositoryError {
  constructor(
    message: string,
    readonly bundleName?: string,
  ) {
    super(message);
  }
}

/** An increment whose base cannot be found. */
export class ChainBroken extends RepositoryError {}

/** restic failed otherwise (or was killed: `signal` says by what). */
export class ResticFailed extends RepositoryError {
  constructor(
    message: string,
    exitCode?: number,
    readonly signal?: NodeJS.Signals,
  ) {
    super(message, exitCode);
  }
}

/** The repository string with a URL's user:password (rest:https://u:p@host/…) hidden. */
export function redactRepository(repository: string): string {
  return repository.replace(/(\/\/)[^/@\s]*:[^/@\s]*@/g, '$1***@');
}
