/** `ohbackup sample-device DIR`: writes a deterministic sample device to back up. */
import path from 'node:path';
import type { Command } from 'commander';
import { writeSampleDevice } from '../../engine/sampleDevice.js';
import { printJson } from '../output/json.js';
import { formatBytes, formatTable } from '../output/results.js';
import { parseIntOption, parsePositiveNumber } from '../shared.js';

export function registerSampleDevice(program: Command): void {
  program
    .command('sample-device')
    .summary('write a sample device to try backups on')
    .description(
      'Write a sample device to try backups on: five bundles (one folder each) covering many small files, big files, excludes, a bundle that refuses backup, and awkward names. Existing sample bundles in DIR are rewritten.',
    )
    .argument('<dir>', 'the device data root to write')
    .option('--scale <x>', 'multiplies the number of files (1 = about 2,100 files, 27 MiB)', parsePositiveNumber, 1)
    .option('--seed <n>', 'seed of the generator: the same seed and scale give the same device', parseIntOption(0, 0xffffffff), 1)
    .option('--json', 'print the summary line: dir, bundles (bundleName, files, bytes, backupable, excludedFiles, excludedBytes)')
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup sample-device ./device                 # ~2,100 files in 5 bundles
  $ ohbackup sample-device /tmp/small --scale 0.1   # a quick one
  $ ohbackup sample-device ./device --seed 7 --json`,
    )
    .action(async (dir: string, opts: { scale: number; seed: number; json?: boolean }) => {
      const summary = await writeSampleDevice(path.resolve(dir), { scale: opts.scale, seed: opts.seed });
      if (opts.json) {
        printJson('sample-device', { dir: summary.dir, bundles: summary.bundles.map(({ name, ...b }) => ({ bundleName: name, ...b })) });
        return;
      }
      const rows = summary.bundles.map((b) => [b.name, String(b.files), formatBytes(b.bytes), b.backupable ? 'yes' : 'no']);
      console.log(`Sample device written to ${summary.dir}\n`);
      console.log(formatTable(['bundle', 'files', 'bytes', 'backupable'], rows, [1, 2]));
      console.log(`\nNext: ohbackup dev --data-root ${summary.dir}`);
    });
}
