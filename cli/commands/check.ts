/**
 * `ohbackup check`: a repository (restic's check, then every stored bundle
 * against its index), or a plain set folder against its indexes.
 */
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { checkSetFolder, type SetCheck } from '../../client/sets/verify.js';
import type { CheckResult } from '../../engine/repository/index.js';
import { formatCheck } from '../output/repository.js';
import { jsonRepository } from '../output/schemas.js';
import { openRepository, repoAction, repoOptions, type RepoFlags } from '../repository.js';
import { EXIT, parseDeviceId, usageError } from '../shared.js';
import { ON_DEVICE_HELP, deviceQueryCommand } from './deviceRun.js';

function formatSetCheck(r: SetCheck): string {
  const lines = r.bundles.flatMap((b) => (b.problems.length ? [`${b.bundleName}: DAMAGED`, ...b.problems.map((p) => `  ${p}`)] : [`${b.bundleName}: OK`]));
  lines.push(`${r.ok ? 'Clean' : 'DAMAGED'}: ${r.set}`);
  return lines.join('\n');
}

export function registerCheck(program: Command): void {
  repoOptions(
    program
      .command('check')
      .summary('check a repository (or a backup set folder) for damage')
      .description(
        "Check a repository: restic's own check of its structure (with --read-data, every pack read back), then every bundle of every snapshot " +
          'against its stored index (what is stored, kind and size; with --read-data every file hashed against its SHA-256). ' +
          'With a folder instead, check that backup set folder: every slice and big file against its index (SHA-256, tar entries).',
      )
      .argument('[dir]', 'a backup set folder to check instead of a repository'),
  )
    .option('--read-data', 'read every byte back and check it (slower)')
    .option('--on-device', ON_DEVICE_HELP)
    .option('--device <id>', 'with --on-device: the device whose worker checks the repository', parseDeviceId)
    .option('--read-data-subset <n%>', "read back this part of the packs: n% or n/t or a size (restic's); bundles are checked by size")
    .option(
      '--json',
      'print the summary line: repository, ok, restic, damaged: [{ snapshot, bundleName, problem }], snapshotsChecked (a set folder: set, ok, bundles)',
    )
    .addHelpText(
      'after',
      `
Exit codes: 0 clean; 1 damaged (the output names each damaged snapshot and bundle), or the repository cannot be opened; 2 wrong usage.

Examples:
  $ ohbackup check --read-data
  $ ohbackup check --repo s3:https://s3.example.com/bucket --read-data-subset 10%
  $ ohbackup check ./set --json
  $ ohbackup check --device phone-1 --repo offsite --on-device        # checked by phone-1's worker`,
    )
    .action(
      async (
        dir: string | undefined,
        opts: RepoFlags & { readData?: boolean; readDataSubset?: string; onDevice?: boolean; device?: string; json?: boolean },
        cmd: Command,
      ) => {
        if (opts.readData && opts.readDataSubset !== undefined) usageError(cmd, '--read-data and --read-data-subset exclude each other.');
        if (opts.readDataSubset !== undefined && !/^(\d+(\.\d+)?%|\d+\/\d+|\d+[KMGT]?)$/.test(opts.readDataSubset))
          usageError(cmd, `--read-data-subset "${opts.readDataSubset}" is not n% (like 10%), n/t (like 1/5) or a size (like 500M).`);
        if (opts.onDevice) {
          if (dir !== undefined) usageError(cmd, '--on-device checks a repository of the device, not a set folder.');
          return deviceQueryCommand(
            cmd,
            { kind: 'check', device: opts.device, repository: opts.repo, readData: opts.readData, readDataSubset: opts.readDataSubset },
            {
              json: opts.json,
              failure: 'Checking the repository failed',
              toJson: (r: CheckResult, where) => jsonRepository.check({ ...r, repository: where }),
              format: formatCheck,
              ok: (r: CheckResult) => r.ok,
            },
          );
        }
        if (opts.device !== undefined) usageError(cmd, '--device goes with --on-device.');
        if (dir !== undefined) {
          if (opts.repo !== undefined) usageError(cmd, 'give a set folder or --repo, not both.');
          if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) usageError(cmd, `${dir} is not a folder.`);
          return repoAction(
            {
              json: opts.json,
              jsonKind: 'check',
              failure: 'Checking the set failed',
              toJson: jsonRepository.checkSet,
              format: formatSetCheck,
              exitCode: (r) => (r.ok ? EXIT.ok : EXIT.failed),
            },
            () => checkSetFolder(dir),
          );
        }
        let name = '';
        await repoAction(
          {
            json: opts.json,
            jsonKind: 'check',
            failure: 'Checking the repository failed',
            toJson: jsonRepository.check,
            format: (r: CheckResult) => formatCheck(r, name),
            exitCode: (r) => (r.ok ? EXIT.ok : EXIT.failed),
          },
          async () => {
            const repository = await openRepository(opts);
            name = repository.name;
            return { repository: name, ...(await repository.check({ readData: opts.readData, readDataSubset: opts.readDataSubset })) };
          },
        );
      },
    );
}
