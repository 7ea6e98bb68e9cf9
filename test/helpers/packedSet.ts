/**
 * Backup set folders made without Temporal: each bundle packed by the real
 * packer (packBundle, with small limits so there are several slices and big
 * files), its handed-over files and index copied into `<set>/<bundle>/` as
 * `ohbackup backup` keeps them (0600), plus backup_set.json and
 * capabilities.json. Incremental sets pack against the base set's manifests.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { readManifest } from '../../engine/formats/manifest.js';
import { packBundle } from '../../engine/pack/index.js';
import type { ManageIndex } from '../../common/manageIndex.js';

export const SMALL_LIMITS = { bigFileBytes: 256 * 1024, sliceBytes: 512 * 1024, sliceEntries: 200 };

export interface PackedSetOptions {
  /** bundle name → its data folder. */
  bundles: Record<string, string>;
  out: string;
  /** The base set (an increment of it); every bundle it holds is packed as an increment. */
  base?: string;
  /** Write manifests (an incremental session): default true. */
  incremental?: boolean;
  scratch: string;
  limits?: typeof SMALL_LIMITS;
  createdAt?: Date;
}

export async function makePackedSet(o: PackedSetOptions): Promise<{ sessionId: string; dir: string }> {
  const sessionId = randomUUID();
  await fsp.mkdir(o.out, { recursive: true, mode: 0o700 });
  const created = o.createdAt ?? new Date();
  const bundles = [];
  for (const [name, dataDir] of Object.entries(o.bundles)) {
    const work = path.join(o.scratch, `${sessionId}-${name}`);
    const manifestPath = path.join(work, 'manifest.jsonl');
    await fsp.mkdir(work, { recursive: true });
    let base;
    let baseTime;
    if (o.base) {
      const m = await readManifest(path.join(o.base, name, 'manifest.jsonl'));
      base = m.entries;
      baseTime = m.header.time;
    }
    const out = path.join(work, 'out');
    await packBundle({
      bundleName: name,
      dataDir,
      outDir: out,
      profile: { excludes: [] },
      limits: o.limits ?? SMALL_LIMITS,
      ...(o.incremental !== false ? { manifestPath } : {}),
      base,
      baseTime,
      time: Math.floor(created.getTime() / 1000),
    });
    const index = JSON.parse(await fsp.readFile(path.join(out, 'manage.json'), 'utf8')) as ManageIndex;
    const dir = path.join(o.out, name);
    await fsp.mkdir(dir, { mode: 0o700 });
    for (const f of index.files) await fsp.copyFile(path.join(out, f.uri), path.join(dir, f.uri));
    await fsp.copyFile(path.join(out, 'manage.json'), path.join(dir, 'manage.json'));
    if (o.incremental !== false) await fsp.copyFile(manifestPath, path.join(dir, 'manifest.jsonl'));
    for (const n of await fsp.readdir(dir)) await fsp.chmod(path.join(dir, n), 0o600);
    await fsp.rm(work, { recursive: true, force: true });
    bundles.push({ bundleName: name, state: 'done', files: index.files.length + 1, bytes: index.totals.bytes });
  }
  const summary = {
    version: 1,
    sessionId,
    kind: o.incremental !== false || o.base ? 'incremental' : 'backup',
    createdAt: created.toISOString(),
    time: Math.floor(created.getTime() / 1000),
    ...(o.base ? { base: path.resolve(o.base), baseRelative: path.relative(o.out, o.base) } : {}),
    bundles,
  };
  await fsp.writeFile(path.join(o.out, 'backup_set.json'), JSON.stringify(summary, null, 2), { mode: 0o600 });
  await fsp.writeFile(path.join(o.out, 'capabilities.json'), JSON.stringify({ bundleInfos: Object.keys(o.bundles).map((name) => ({ name })) }), {
    mode: 0o600,
  });
  return { sessionId, dir: o.out };
}

export async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

/** Every file of a set folder but backup_set.json (relative path → SHA-256), optionally of some bundles only. */
export async function setDigest(dir: string, bundles?: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const d of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        if (rel || !bundles || bundles.includes(d.name)) await walk(r);
      } else if (r !== 'backup_set.json') out[r] = await sha256Of(path.join(dir, r));
    }
  };
  await walk('');
  return out;
}
