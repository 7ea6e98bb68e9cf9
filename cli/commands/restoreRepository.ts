/**
 * `ohbackup restore --from SNAPSHOT|latest` (a repository): the snapshot's
 * chain is rebuilt into private set folders and restored through the plain
 * set path (client/runs/repositoryRuns.ts), onto the device or `--to`.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import * as backup from '../../client/backup.js';
import { restoreFromRepository, type RepositoryRestoreResult } from '../../client/runs/repositoryRuns.js';
import { formatRestoreResult } from '../output/results.js';
import { jsonRepositoryRestore } from '../output/schemas.js';
import { openRepository, type RepoFlags } from '../repository.js';
import { runCommand } from '../shared.js';
import { restoreColumns } from '../output/columns.js';
import { onTarget } from '../restoreTarget.js';

export interface RepoRestoreFlags extends RepoFlags {
  from: string;
  to?: string;
  map?: Record<string, string>;
  device?: string;
  json?: boolean;
}

const SNAPSHOT_REF = /^(latest|[0-9a-f]{4,64}|session:.+)$/;

/** `--from` names a snapshot: a repository was named, or it is no folder here and reads as a snapshot reference. */
export function fromRepository(opts: RepoRestoreFlags): boolean {
  if (opts.repo !== undefined || opts.passwordFile !== undefined) return true;
  return !statSync(opts.from, { throwIfNoEntry: false }) && SNAPSHOT_REF.test(opts.from);
}

function format(r: RepositoryRestoreResult, elapsedMs: number): string {
  return `${formatRestoreResult(r, elapsedMs)}\nRepository   ${r.repository}\nSnapshots    ${r.snapshots.map((s) => s.shortId).join(' → ')}`;
}

export async function restoreFromRepositoryCommand(cmd: Command, bundles: string[], opts: RepoRestoreFlags): Promise<void> {
  if (opts.device && opts.to === undefined) backup.configure({ device: opts.device });
  await runCommand(
    cmd,
    { progress: restoreColumns, json: opts.json, jsonKind: 'restore', toJson: jsonRepositoryRestore, format, failure: 'Restore failed' },
    async ({ onProgress, signal }) => {
      const repository = await openRepository(opts);
      return onTarget(opts.to !== undefined ? path.resolve(opts.to) : undefined, signal, (target) =>
        restoreFromRepository({
          repository,
          snapshot: opts.from,
          device: opts.device,
          bundles: bundles.length ? bundles : undefined,
          ...(opts.to !== undefined ? { to: opts.to } : {}),
          ...(opts.map ? { map: opts.map } : {}),
          ...target,
          onProgress,
          signal,
        }),
      );
    },
  );
}
