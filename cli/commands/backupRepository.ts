/**
 * `ohbackup backup` into a repository (no --out): the same session, stored as
 * one snapshot (client/runs/repositoryRuns.ts); the store's progress is a
 * bar of its own, its figures (added vs deduplicated) in the result.
 */
import type { Command } from 'commander';
import { DEFAULT_SNAPSHOT_DEVICE } from '../../config/repository.js';
import { readSettings } from '../../config/env.js';
import { backupToRepository, type RepositoryBackupResult } from '../../client/runs/repositoryRuns.js';
import type { BackupProgressEvent } from '../../client/runs/runBackup.js';
import type { ProgressColumns, StepEvent } from '../output/progress.js';
import { storeLine, storeStatus } from '../output/repository.js';
import { formatBackupResult } from '../output/results.js';
import { jsonRepositoryBackup } from '../output/schemas.js';
import { openRepository, type RepoFlags } from '../repository.js';
import { runCommand } from '../shared.js';
import { backupColumns } from '../output/columns.js';
import { watchPauses } from '../pauses.js';

export interface RepoBackupFlags extends RepoFlags {
  rate?: number;
  incremental?: boolean;
  base?: string;
  device?: string;
  json?: boolean;
}

function format(r: RepositoryBackupResult, elapsedMs: number): string {
  const lines = formatBackupResult({ ...r, out: '' }, elapsedMs)
    .split('\n')
    .filter((l) => !l.startsWith('Backup set'));
  const at = lines.findIndex((l) => l.startsWith('Session  '));
  const more = [`Repository   ${r.repository}`];
  if (r.snapshot) more.push(`Snapshot     ${r.snapshot.id}${r.kind === 'incremental' ? ' (incremental)' : ''}`);
  else more.push('Snapshot     none (no bundle was backed up, or storing failed)');
  if (r.baseSnapshot) more.push(`Base         ${r.baseSnapshot.id}`);
  if (r.store) more.push(`Stored       ${storeLine(r.store)}`);
  lines.splice(at < 0 ? lines.length : at, 0, ...more);
  return lines.join('\n');
}

export async function backupToRepositoryCommand(cmd: Command, bundles: string[], opts: RepoBackupFlags): Promise<void> {
  await runCommand(
    cmd,
    {
      progress: backupColumns as ProgressColumns<BackupProgressEvent | StepEvent>,
      json: opts.json,
      jsonKind: 'backup',
      toJson: jsonRepositoryBackup,
      format,
      failure: 'Backup failed',
    },
    async ({ onProgress, signal }) => {
      const repository = await openRepository(opts);
      const rates = watchPauses(onProgress);
      const r = await backupToRepository({
        repository,
        device: opts.device ?? readSettings().device ?? DEFAULT_SNAPSHOT_DEVICE,
        bundles,
        rate: opts.rate,
        incremental: opts.incremental,
        base: opts.base,
        signal,
        onProgress: rates.onProgress,
        onStoreProgress: (p) => onProgress({ type: 'step', step: 'repository', fraction: p.percent, status: storeStatus(p) }),
      }).finally(() => rates.stop());
      if (r.store) onProgress({ type: 'step', step: 'repository', fraction: 1, status: `snapshot ${r.snapshot?.shortId}: ${storeLine(r.store)}`, done: true });
      return r;
    },
  );
}
