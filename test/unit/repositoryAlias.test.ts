import { describe, expect, it } from 'vitest';
import { repositoryAliasNames, resolveDeviceAlias } from '../../config/repository.js';

describe("a device worker's repository aliases (device-side runs)", () => {
  const env = {
    OHBACKUP_REPOSITORY_OFFSITE: 's3:http://10.0.0.1:9000/b',
    OHBACKUP_REPOSITORY_OFFSITE_PASSWORD_FILE: '/etc/pw',
    OHBACKUP_REPOSITORY_LOCAL: '/srv/repo',
    OHBACKUP_REPOSITORY: '/the/cli/default',
  };

  it('resolves an alias (any case) to its repository string and password file', () => {
    expect(resolveDeviceAlias('offsite', env)).toEqual({ repository: 's3:http://10.0.0.1:9000/b', passwordFile: '/etc/pw', alias: 'offsite' });
    expect(resolveDeviceAlias('OffSite', env).repository).toBe('s3:http://10.0.0.1:9000/b');
    // No password file of its own: restic's settings of the worker's environment.
    expect(resolveDeviceAlias('local', env)).toEqual({ repository: '/srv/repo', alias: 'local' });
  });

  it('takes nothing but an alias of its own environment: not a path, not a URL, not "state", not OHBACKUP_REPOSITORY', () => {
    expect(() => resolveDeviceAlias('nope', env)).toThrow(/this device has no repository "nope": OHBACKUP_REPOSITORY_NOPE is not set/);
    expect(() => resolveDeviceAlias('state', env)).toThrow(/no repository "state"/);
    expect(() => resolveDeviceAlias('/srv/repo', env)).toThrow(/not a repository alias/);
    expect(() => resolveDeviceAlias('s3:http://10.0.0.1:9000/b', env)).toThrow(/not a repository alias/);
  });

  it('lists the aliases by name only', () => {
    expect(repositoryAliasNames(env)).toEqual(['local', 'offsite']);
  });
});
