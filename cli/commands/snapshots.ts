/** `ohbackup snapshots`: the backup sessions a repository keeps. */
import type { Command } from 'commander';
import { BundleNameArg } from '../../client/validate.js';
import { formatSnapshots } from '../output/repository.js';
import { jsonRepository } from '../output/schemas.js';
import { openRepository, repoAction, repoOptions, type RepoFlags } from '../repository.js';
import { parseDeviceId, usageError } from '../shared.js';

export function registerSnapshots(program: Command): void {
  repoOptions(
    program
      .command('snapshots')
      .summary("list the repository's backup snapshots")
      .description(
        "List the ohbackup snapshots of a repository, oldest first: ID, time (the session's start), device, kind (full, incremental = a full one " +
          'that keeps manifests, increment = of the base shown), the bundles stored (partial: some bundle of the session was not) and size.',
      ),
  )
    .option('--device <id>', 'only the snapshots of this device', parseDeviceId)
    .option('--bundle <name>', 'only the snapshots that store this bundle')
    .option('--json', 'print the summary line: repository, snapshots (id, shortId, time, device, sessionId, kind, bundles, partial, base, size, dataAdded)')
    .addHelpText(
      'after',
      `
Exit codes: 0 listed (also when there are none); 1 the repository cannot be opened; 2 wrong usage.

Examples:
  $ ohbackup snapshots
  $ ohbackup snapshots --repo /backups/repo --device phone-1 --bundle com.example.notes --json`,
    )
    .action(async (opts: RepoFlags & { device?: string; bundle?: string; json?: boolean }, cmd: Command) => {
      if (opts.bundle !== undefined && !BundleNameArg.safeParse(opts.bundle).success) usageError(cmd, `"${opts.bundle}" is not a bundle name.`);
      let name = '';
      await repoAction(
        {
          json: opts.json,
          jsonKind: 'snapshots',
          failure: 'Listing snapshots failed',
          toJson: (list) => jsonRepository.snapshots(name, list),
          format: (list) => formatSnapshots(list, name),
        },
        async () => {
          const repository = await openRepository(opts);
          name = repository.name;
          return repository.snapshots({ device: opts.device, bundle: opts.bundle });
        },
      );
    });
}
