/**
 * What an increment needs of its base, without the data: the base's
 * backup_set.json (its time and which bundles it holds) and each bundle's
 * manifest.jsonl, written as a set folder that the incremental backup path
 * (`runBackup({ base })`) reads like any other base set. A bundle stored
 * without a manifest is simply backed up in full by the increment.
 *
 * Two sources. The kept staging tree the base was stored from
 * (stagingCache.ts) holds those very files: it is read when its record names
 * the base snapshot, and every file read still has its recorded inode, size,
 * mtime and ctime (nothing wrote to it since it was staged, so restic stored
 * these bytes) and its recorded SHA-256. Anything else — no tree, another
 * snapshot's, a store that crashed half-way through it, a hand in it — and
 * the files come from restic, in one `restic restore`.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ResticFailed } from './errors.js';
import { runRestic, type ResticContext } from './resticProcess.js';
import type { StagedRecords } from './stageBundle.js';
import { SET_MANIFEST, SET_SUMMARY, SetSummarySchema, type SetSummary } from './storedLayout.js';

/** The base's summary as an increment reads it: no base folder of its own, only the bundles the snapshot stores. */
async function writeBase(outDir: string, summary: SetSummary, stored: string[], manifests: Map<string, Buffer>): Promise<SetSummary> {
  await fsp.mkdir(outDir, { recursive: true, mode: 0o700 });
  for (const [b, bytes] of manifests) {
    await fsp.mkdir(path.join(outDir, b), { mode: 0o700 });
    await fsp.writeFile(path.join(outDir, b, SET_MANIFEST), bytes, { mode: 0o600 });
  }
  const { base: _b, baseRelative: _r, ...rest } = summary;
  const written = { ...rest, bundles: summary.bundles.filter((o) => stored.includes(o.bundleName)) };
  await fsp.writeFile(path.join(outDir, SET_SUMMARY), JSON.stringify(written, null, 2), { mode: 0o600 });
  return written;
}

function parseSummary(bytes: Buffer): SetSummary | undefined {
  try {
    const parsed = SetSummarySchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** From restic: the summary and every stored bundle's manifest in one `restic restore --include`. */
export async function materializeBaseManifests(
  ctx: ResticContext,
  snapshotId: string,
  outDir: string,
  stored: string[],
  signal?: AbortSignal,
): Promise<SetSummary> {
  await fsp.mkdir(outDir, { recursive: true, mode: 0o700 });
  const tmp = await fsp.mkdtemp(path.join(outDir, '.base-'));
  try {
    const includes = [`/${SET_SUMMARY}`, ...stored.map((b) => `/${b}/${SET_MANIFEST}`)];
    await runRestic(ctx, {
      args: ['restore', '--json', snapshotId, '--target', tmp, ...includes.flatMap((i) => ['--include', i])],
      onJson: () => undefined,
      signal,
    });
    const raw = await fsp.readFile(path.join(tmp, SET_SUMMARY)).catch(() => {
      throw new ResticFailed(`snapshot ${snapshotId} stores no ${SET_SUMMARY}`);
    });
    const summary = parseSummary(raw);
    if (!summary) throw new ResticFailed(`snapshot ${snapshotId}: its ${SET_SUMMARY} is not valid`);
    const manifests = new Map<string, Buffer>();
    for (const b of stored) {
      const bytes = await fsp.readFile(path.join(tmp, b, SET_MANIFEST)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      if (bytes) manifests.set(b, bytes);
    }
    return await writeBase(outDir, summary, stored, manifests);
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/** A file of a kept tree, only while it still has its recorded lstat and SHA-256 (else undefined). */
async function readRecorded(tree: string, records: StagedRecords, rel: string): Promise<Buffer | undefined> {
  const r = records.get(rel);
  if (!r) return undefined;
  const file = path.join(tree, rel);
  const st = await fsp.lstat(file, { bigint: true }).catch(() => undefined);
  if (!st || String(st.ino) !== r.ino || Number(st.size) !== r.size || String(st.mtimeNs) !== r.mtimeNs || String(st.ctimeNs) !== r.ctimeNs) return undefined;
  const bytes = await fsp.readFile(file).catch(() => undefined);
  return bytes && bytes.length === r.size && createHash('sha256').update(bytes).digest('hex') === r.sha256 ? bytes : undefined;
}

/** The summary a kept tree was stored with, when it still is what was stored. */
export async function keptTreeSummary(tree: string, records: StagedRecords): Promise<SetSummary | undefined> {
  const raw = await readRecorded(tree, records, SET_SUMMARY);
  return raw && parseSummary(raw);
}

/**
 * From a kept staging tree whose record names the base snapshot (the caller
 * checks that): undefined, and nothing written, unless every file needed
 * still is what was stored.
 */
export async function baseFromKeptTree(
  tree: string,
  records: StagedRecords,
  sessionId: string,
  outDir: string,
  stored: string[],
): Promise<SetSummary | undefined> {
  const summary = await keptTreeSummary(tree, records);
  if (!summary || summary.sessionId !== sessionId) return undefined;
  const manifests = new Map<string, Buffer>();
  for (const b of stored) {
    const rel = path.join(b, SET_MANIFEST);
    // No record: the snapshot stores no manifest of this bundle (the records are exactly what was stored).
    if (!records.has(rel)) continue;
    const bytes = await readRecorded(tree, records, rel);
    if (!bytes) return undefined;
    manifests.set(b, bytes);
  }
  return writeBase(outDir, summary, stored, manifests);
}
