import { describe, expect, it } from 'vitest';
import { repositoryAliasNames, resolveRepositoryAlias } from '../../config/repositories.js';

describe('repository aliases of a device worker', () => {
  const env = {
    OHBACKUP_REPOSITORY_OFFSITE: 's3:http://10.0.0.1:9000/b',
    OHBACKUP_REPOSITORY_OFFSITE_PASSWORD_FILE: '/etc/pw',
    OHBACKUP_REPOSITORY_HALF: '/srv/repo',
    OHBACKUP_REPOSITORY: '/the/cli/default',
  };

  it('resolves an alias (any case) to its repository string and password file', () => {
    expect(resolveRepositoryAlias('offsite', env)).toEqual({ name: 'offsite', repository: 's3:http://10.0.0.1:9000/b', passwordFile: '/etc/pw' });
    expect(resolveRepositoryAlias('OffSite', env).repository).toBe('s3:http://10.0.0.1:9000/b');
  });

  it('refuses a missing or half-configured alias, naming the variables it looked for', () => {
    expect(() => resolveRepositoryAlias('nope', env)).toThrow(/OHBACKUP_REPOSITORY_NOPE and OHBACKUP_REPOSITORY_NOPE_PASSWORD_FILE are not set/);
    expect(() => resolveRepositoryAlias('half', env)).toThrow(/OHBACKUP_REPOSITORY_HALF_PASSWORD_FILE is not set/);
    expect(() => resolveRepositoryAlias('../x', env)).toThrow(/not a repository alias/);
  });

  it('lists the complete aliases by name only', () => {
    expect(repositoryAliasNames(env)).toEqual(['offsite']);
  });
});
