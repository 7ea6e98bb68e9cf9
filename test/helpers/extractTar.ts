/**
 * Reads a tar file entry by entry with tar-stream, hashing each entry's data
 * as it streams past (nothing is buffered beyond tar-stream's own chunks).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import tar from 'tar-stream';

export interface TarEntryInfo {
  name: string;
  type: string;
  mode: number;
  mtime: Date;
  size: number;
  sha256: string;
}

export async function extractTarEntries(tarPath: string): Promise<TarEntryInfo[]> {
  const extract = tar.extract();
  const input = createReadStream(tarPath);
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);

  const out: TarEntryInfo[] = [];
  for await (const entry of extract) {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
    }
    const h = entry.header;
    out.push({ name: h.name, type: h.type, mode: h.mode, mtime: h.mtime, size, sha256: hash.digest('hex') });
  }
  return out;
}
