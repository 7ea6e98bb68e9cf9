/** A big file, copied alone into `file.<n>`. */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { HandedFile, IndexEntry } from '../../common/manageIndex.js';
import { FILE_MODE, type OpenedStat } from './options.js';
import type { OutputSyncs } from './outputSync.js';
import type { PackProgressMeter } from './progress.js';
import { changedWhileRead } from './sources.js';

/**
 * Copies at most the `st.size` bytes the file had when opened, so a file that
 * keeps growing cannot hold the pack up. Its record describes the bytes
 * copied (all of them when it shrank meanwhile); `changed` says why they may
 * not be one moment's state of the file.
 *
 * `buf` (the packer's small-file scratch, 256 KiB) carries every chunk: a
 * stream allocated a MiB per read and left it for the collector, and eight
 * packs at once held 50-60 MiB of such garbage (docs/design/performance.md).
 */
export async function packBigFile(
  fh: fsp.FileHandle,
  rel: string,
  st: OpenedStat,
  uri: string,
  outDir: string,
  buf: Buffer,
  progress: PackProgressMeter,
  syncs: OutputSyncs,
  signal: AbortSignal | undefined,
): Promise<{ handed: HandedFile; changed?: string }> {
  const hash = createHash('sha256');
  let size = 0;
  const target = path.join(outDir, uri);
  const out = await fsp.open(target, 'wx', FILE_MODE);
  // Flushed in the background as it is written, and closed after (outputSync.ts: why a transient output is flushed).
  const sync = syncs.open(target, out.fd, () => out.close());
  try {
    // Chunks of 256 KiB: a big file costs a few hundred thread-pool round trips, not thousands.
    while (size < st.size) {
      signal?.throwIfAborted();
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, st.size - size), size);
      if (bytesRead === 0) break; // it shrank
      const chunk = buf.subarray(0, bytesRead);
      hash.update(chunk);
      for (let off = 0; off < bytesRead;) off += (await out.write(chunk, off)).bytesWritten;
      size += bytesRead;
      sync.wrote(bytesRead);
      progress.add(0, bytesRead);
    }
  } catch (err) {
    sync.abort();
    throw err;
  }
  sync.finish();
  const sha256 = hash.digest('hex');
  const entry: IndexEntry = { path: rel, kind: 'file', size: size, mode: st.mode, mtimeMs: st.mtimeMs, sha256 };
  progress.add(1, 0);
  const changed = await changedWhileRead(fh, st, size < st.size ? `shrank to ${size} bytes, those stored` : undefined);
  return { handed: { uri, kind: 'file', size: size, sha256, entries: [entry] }, changed };
}
