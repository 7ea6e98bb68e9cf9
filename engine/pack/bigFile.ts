/** A big file, copied alone into `file.<n>`. */
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { HandedFile, IndexEntry } from '../../common/manageIndex.js';
import { FILE_MODE, WRITE_BATCH_BYTES, type OpenedStat } from './options.js';
import { hashing, type PackProgressMeter } from './progress.js';
import { changedWhileRead } from './sources.js';

/**
 * Copies at most the `st.size` bytes the file had when opened, so a file that
 * keeps growing cannot hold the pack up. Its record describes the bytes
 * copied (all of them when it shrank meanwhile); `changed` says why they may
 * not be one moment's state of the file.
 */
export async function packBigFile(
  fh: fsp.FileHandle,
  rel: string,
  st: OpenedStat,
  uri: string,
  outDir: string,
  progress: PackProgressMeter,
  signal: AbortSignal | undefined,
): Promise<{ handed: HandedFile; changed?: string }> {
  const outPath = path.join(outDir, uri);
  const hash = createHash('sha256');
  let size = 0;
  try {
    // MiB-sized chunks: a big file costs a few dozen thread-pool round trips, not thousands.
    await pipeline(
      fh.createReadStream({ autoClose: false, start: 0, end: st.size - 1, highWaterMark: WRITE_BATCH_BYTES }),
      hashing(hash, (n) => {
        size += n;
        progress.add(0, n);
      }),
      createWriteStream(outPath, { flags: 'wx', mode: FILE_MODE, highWaterMark: WRITE_BATCH_BYTES }),
      { signal },
    );
  } catch (err) {
    // An abort mid-file surfaces as the signal's reason, like an abort between entries.
    signal?.throwIfAborted();
    throw err;
  }
  const sha256 = hash.digest('hex');
  const entry: IndexEntry = { path: rel, kind: 'file', size: size, mode: st.mode, mtimeMs: st.mtimeMs, sha256 };
  progress.add(1, 0);
  const changed = await changedWhileRead(fh, st, size < st.size ? `shrank to ${size} bytes, those stored` : undefined);
  return { handed: { uri, kind: 'file', size: size, sha256, entries: [entry] }, changed };
}
