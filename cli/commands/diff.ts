/** `ohbackup diff A B`: what changed between two snapshots of a device, per bundle. */
import type { Command } from 'commander';
import type { DiffResult } from '../../engine/repository/index.js';
import { formatDiff } from '../output/repository.js';
import { jsonRepository } from '../output/schemas.js';
import { openRepository, repoAction, repoOptions, type RepoFlags } from '../repository.js';
import { parseDeviceId, usageError } from '../shared.js';
import { ON_DEVICE_HELP, deviceQueryCommand } from './deviceRun.js';

export function registerDiff(program: Command): void {
  repoOptions(
    program
      .command('diff')
      .summary('what changed between two snapshots of a device')
      .description(
        'Compare two snapshots of one device, bundle by bundle: entries new in B, changed (other bytes or kind), deleted, and touched ' +
          '(same bytes, another mode or mtime), from the stored manifests (or indexes applied over their bases).',
      )
      .argument('<a>', 'the older snapshot: an ID (or a prefix), "latest" or session:ID')
      .argument('<b>', 'the newer snapshot'),
  )
    .option('--on-device', ON_DEVICE_HELP)
    .option('--device <id>', 'with --on-device: the device whose worker compares the snapshots', parseDeviceId)
    .option('--json', 'print the summary line: repository, a, b (snapshots), bundles: [{ bundleName, new, changed, deleted, touched, only }]')
    .addHelpText(
      'after',
      `
Exit codes: 0 compared; 1 a snapshot is not there, they are of two devices, or the repository cannot be opened; 2 wrong usage.

Examples:
  $ ohbackup diff 1a2b3c4d latest
  $ ohbackup diff --repo /backups/repo 1a2b3c4d 5e6f7a8b --json
  $ ohbackup diff --device phone-1 --repo offsite --on-device 1a2b3c4d latest`,
    )
    .action(async (a: string, b: string, opts: RepoFlags & { onDevice?: boolean; device?: string; json?: boolean }, cmd: Command) => {
      if (opts.onDevice) {
        return deviceQueryCommand(
          cmd,
          { kind: 'diff', device: opts.device, repository: opts.repo, a, b },
          {
            json: opts.json,
            failure: 'Comparing snapshots failed',
            toJson: (r: DiffResult, where) => jsonRepository.diff(where, r),
            format: formatDiff,
          },
        );
      }
      if (opts.device !== undefined) usageError(cmd, '--device goes with --on-device.');
      let name = '';
      await repoAction(
        { json: opts.json, jsonKind: 'diff', failure: 'Comparing snapshots failed', toJson: (r) => jsonRepository.diff(name, r), format: formatDiff },
        async () => {
          const repository = await openRepository(opts);
          name = repository.name;
          return repository.diff(a, b);
        },
      );
    });
}
