/** Checks a backup set against the device it came from: every entry's bytes, mode and mtime, every index SHA-256. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { readManageIndex } from '../../activities/packBundle.js';
import { walkBundle } from '../../activities/walkBundle.js';
import { loadBundle } from '../../activities/bundleProfile.js';
import { bundlePaths } from '../../common/device.js';
import { extractTarEntries } from './extractTar.js';

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

/** Returns a list of mismatches (empty when the bundle's set matches the device byte for byte). */
export async function compareBundleSet(setDir: string, dataRoot: string, bundleName: string): Promise<string[]> {
  const problems: string[] = [];
  const dir = path.join(setDir, bundleName);
  const index = await readManageIndex(path.join(dir, 'manage.json'));
  const seen = new Map<string, { kind: string; sha256: string; size: number; mode: number }>();
  for (const f of index.files) {
    const file = path.join(dir, f.uri);
    const st = await lstat(file).catch(() => undefined);
    if (!st) {
      problems.push(`${f.uri}: listed in the index but not handed over`);
      continue;
    }
    if ((st.mode & 0o777) !== 0o600) problems.push(`${f.uri}: mode ${(st.mode & 0o777).toString(8)}, not 600`);
    if ((await sha256File(file)) !== f.sha256) problems.push(`${f.uri}: SHA-256 differs from the index`);
    if (f.kind === 'file') {
      const e = f.entries[0]!;
      seen.set(e.path, { kind: 'file', sha256: f.sha256, size: f.size, mode: e.mode });
      continue;
    }
    const entries = await extractTarEntries(file);
    for (const [i, e] of f.entries.entries()) {
      const t = entries[i];
      if (!t || t.name !== e.path) problems.push(`${f.uri}: entry ${i} is ${t?.name}, the index says ${e.path}`);
      else if (e.kind === 'file' && t.sha256 !== e.sha256) problems.push(`${e.path}: SHA-256 in the tar differs from the index`);
      seen.set(e.path, { kind: e.kind, sha256: e.sha256, size: e.size, mode: e.mode });
    }
  }
  const loaded = await loadBundle(dataRoot, bundleName);
  if (!loaded.ok) return [...problems, `${bundleName}: ${loaded.error.message}`];
  let sourceCount = 0;
  for await (const item of walkBundle(bundlePaths(dataRoot, bundleName).data, loaded.config)) {
    if (item.type !== 'entry') continue;
    sourceCount += 1;
    const got = seen.get(item.path);
    if (!got) problems.push(`${item.path}: on the device but not in the set`);
    else if (got.kind !== item.kind) problems.push(`${item.path}: kind ${got.kind}, device has ${item.kind}`);
    else if (item.kind === 'file') {
      if (got.sha256 !== (await sha256File(item.absPath))) problems.push(`${item.path}: bytes differ from the device`);
      if (got.mode !== item.mode) problems.push(`${item.path}: mode differs`);
    }
  }
  if (sourceCount !== seen.size) problems.push(`${bundleName}: the set has ${seen.size} entries, the device ${sourceCount}`);
  return problems;
}
