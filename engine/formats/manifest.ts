/**
 * Reads and writes the incremental manifest (format: common/manifest.ts).
 * Both stream: the writer keeps one buffer of lines, the reader one line at a
 * time (plus the map it returns).
 *
 * Writing is atomic: lines go to `<path>.tmp` (0600), the entry count is
 * patched into the header, the file is fsynced, renamed over `<path>` and the
 * folder fsynced, so a reader sees a whole manifest or the previous one.
 */
import { createHash } from 'node:crypto';
import { constants as fsc, promises as fsp, read as fsRead } from 'node:fs';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  parseManifestEntry,
  ManifestHeaderSchema,
  ManifestInvalid,
  describeIssues,
  type ManifestEntry,
  type ManifestHeader,
  type ManifestHeaderInit,
} from '../../common/manifest.js';
import { TextAppender, writeAllAt } from '../fsx.js';

export { ManifestInvalid } from '../../common/manifest.js';
export type { ManifestEntry, ManifestHeader, ManifestHeaderInit } from '../../common/manifest.js';

const FILE_MODE = 0o600;
const FLUSH_BYTES = 64 * 1024;
const READ_CHUNK = 64 * 1024;
/** Room for the entry count in the header: Number.MAX_SAFE_INTEGER has 16 digits. */
const COUNT_WIDTH = 16;
/** What `ManifestWriter.add` returns when the entry was only buffered: a caller may skip awaiting it. */
export const BUFFERED: Promise<void> = Promise.resolve();

export interface ReadManifestResult {
  header: ManifestHeader;
  /** Every entry by path, in file (walk) order. */
  entries: Map<string, ManifestEntry>;
  /** Hex SHA-256 of the bytes read: the same manifest, the same digest. */
  digest: string;
}

/**
 * Streams a manifest to `target.tmp` and publishes it atomically on close().
 * Entries are validated and must have distinct paths (a programming error otherwise).
 */
export class ManifestWriter {
  readonly #out: TextAppender;
  #count = 0;
  #closed = false;
  readonly #paths = new Set<string>();

  private constructor(
    readonly target: string,
    private readonly tmp: string,
    private readonly fh: fsp.FileHandle,
    private readonly header: ManifestHeaderInit,
    /** Byte offset of the count field in the header line. */
    private readonly countAt: number,
    headerBytes: number,
  ) {
    this.#out = new TextAppender(fh.fd, headerBytes, FLUSH_BYTES);
  }

  static async open(target: string, header: ManifestHeaderInit): Promise<ManifestWriter> {
    const init = { bundleName: header.bundleName, time: header.time };
    const check = ManifestHeaderSchema.safeParse({ format: MANIFEST_FORMAT, version: MANIFEST_VERSION, ...init, entries: 0 });
    if (!check.success) throw new TypeError(`bad manifest header: ${describeIssues(check.error)}`);
    const tmp = `${target}.tmp`;
    const fh = await fsp.open(tmp, fsc.O_CREAT | fsc.O_TRUNC | fsc.O_WRONLY | fsc.O_NOFOLLOW, FILE_MODE);
    try {
      await fh.chmod(FILE_MODE); // an old tmp file keeps its mode through O_CREAT
      const prefix =
        `{"format":${JSON.stringify(MANIFEST_FORMAT)},"version":${MANIFEST_VERSION},` +
        `"bundleName":${JSON.stringify(init.bundleName)},"time":${init.time},"entries":`;
      const line = `${prefix}${'0'.padEnd(COUNT_WIDTH)}}\n`;
      const bytes = Buffer.from(line);
      await writeAllAt(fh.fd, bytes, 0);
      return new ManifestWriter(target, tmp, fh, init, Buffer.byteLength(prefix), bytes.length);
    } catch (err) {
      await fh.close().catch(() => {});
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
  }

  get count(): number {
    return this.#count;
  }

  /**
   * Adds an entry; the returned promise is an already settled one unless the buffer was due to be written.
   * Not an async function: a pack or a derived manifest adds thousands of entries, and a promise each was
   * most of the writer's garbage.
   */
  add(entry: ManifestEntry): Promise<void> {
    try {
      return this.#append(entry) ? this.#flush() : BUFFERED;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Buffers the entry's line; true when the buffer is due to be written. */
  #append(entry: ManifestEntry): boolean {
    if (this.#closed) throw new Error('manifest writer is closed');
    // The parsed copy holds only the known keys, in the documented order.
    const parsed = parseManifestEntry(entry);
    if (!parsed.success) throw new TypeError(`bad manifest entry "${entry.path}": ${describeIssues(parsed.error)}`);
    const e = parsed.data;
    const seen = this.#paths.size;
    this.#paths.add(e.path);
    if (this.#paths.size === seen) throw new TypeError(`manifest entry "${e.path}" added twice`);
    // JSON.stringify(e)'s line, built by hand: only the path can need escaping (kind and sha256 are
    // checked to be plain words, the numbers finite), and a template costs less than the object walk.
    const line = `{"path":${JSON.stringify(e.path)},"kind":"${e.kind}","mode":${e.mode},"size":${e.size},"mtimeMs":${e.mtimeMs},"sha256":"${e.sha256}"}\n`;
    this.#count++;
    return this.#out.push(line);
  }

  #flush(): Promise<void> {
    return this.#out.flush();
  }

  /** Writes the count and renames over the target (atomic for readers). */
  async close(): Promise<ManifestHeader> {
    if (this.#closed) throw new Error('manifest writer is closed');
    this.#closed = true;
    try {
      await this.#flush();
      await writeAllAt(this.fh.fd, Buffer.from(String(this.#count).padEnd(COUNT_WIDTH)), this.countAt);
      // Not fsynced: the worker's copy is transient (the tool keeps its own), and a retried pack rewrites it.
    } catch (err) {
      await this.fh.close().catch(() => {});
      await fsp.rm(this.tmp, { force: true }).catch(() => {});
      throw err;
    }
    await this.fh.close();
    await fsp.rename(this.tmp, this.target);
    return { format: MANIFEST_FORMAT, version: MANIFEST_VERSION, ...this.header, entries: this.#count };
  }

  /** Gives up: the temporary file is removed, the target left as it was. */
  async abort(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.fh.close().catch(() => {});
    await fsp.rm(this.tmp, { force: true }).catch(() => {});
  }
}

/** Writes a whole manifest atomically (tmp + fsync + rename, 0600). Returns the header written. */
export async function writeManifest(
  target: string,
  header: ManifestHeaderInit,
  entries: AsyncIterable<ManifestEntry> | Iterable<ManifestEntry>,
): Promise<ManifestHeader> {
  const w = await ManifestWriter.open(target, header);
  try {
    // A plain iterable (a derived manifest's entries) is walked without a promise per entry.
    if (Symbol.iterator in entries) {
      for (const e of entries) {
        const written = w.add(e);
        if (written !== BUFFERED) await written;
      }
    } else for await (const e of entries) await w.add(e);
  } catch (err) {
    await w.abort();
    throw err;
  }
  return w.close();
}

/**
 * Reads a manifest line by line from a path, or from an open fd (read from
 * position 0 with positioned reads, so the fd's offset is not used or moved,
 * and left open). Throws ManifestInvalid (13900020) for a missing or bad
 * header, a bad line, a duplicate path or a count that does not match the
 * header; I/O errors are thrown as they are.
 */
export async function readManifest(source: string | number): Promise<ReadManifestResult> {
  let fh: fsp.FileHandle | undefined;
  let readAt: (buf: Buffer, pos: number) => Promise<number>;
  if (typeof source === 'number') {
    if (!Number.isInteger(source) || source < 0) throw new TypeError(`not a file descriptor: ${source}`);
    readAt = (buf, pos) => new Promise((resolve, reject) => fsRead(source, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
  } else {
    const opened = await fsp.open(source, 'r');
    fh = opened;
    readAt = async (buf, pos) => (await opened.read(buf, 0, buf.length, pos)).bytesRead;
  }
  const hash = createHash('sha256');
  async function* chunks(): AsyncGenerator<Buffer> {
    let pos = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      const n = await readAt(buf, pos);
      if (n === 0) return;
      pos += n;
      hash.update(buf.subarray(0, n));
      yield buf.subarray(0, n);
    }
  }
  const lines = splitLines(chunks());
  try {
    let header: ManifestHeader | undefined;
    const entries = new Map<string, ManifestEntry>();
    let lineNo = 0;
    for await (const batch of lines) {
      for (const line of batch) {
        lineNo++;
        let json: unknown;
        try {
          json = JSON.parse(line);
        } catch (err) {
          throw new ManifestInvalid(`not JSON (${(err as Error).message})`, lineNo);
        }
        if (header === undefined) {
          const fmt = (json as { format?: unknown } | null)?.format;
          if (fmt !== MANIFEST_FORMAT) throw new ManifestInvalid(`the header's format is not "${MANIFEST_FORMAT}"`, lineNo);
          const version = (json as { version?: unknown }).version;
          if (version !== MANIFEST_VERSION) throw new ManifestInvalid(`unsupported version ${JSON.stringify(version)}`, lineNo);
          const h = ManifestHeaderSchema.safeParse(json);
          if (!h.success) throw new ManifestInvalid(`bad header: ${describeIssues(h.error)}`, lineNo);
          header = h.data;
          continue;
        }
        const e = parseManifestEntry(json);
        if (!e.success) throw new ManifestInvalid(`bad entry: ${describeIssues(e.error)}`, lineNo);
        const size = entries.size;
        entries.set(e.data.path, e.data); // one lookup: a duplicate leaves the size as it was (and the read fails)
        if (entries.size === size) throw new ManifestInvalid(`duplicate path ${JSON.stringify(e.data.path)}`, lineNo);
      }
    }
    if (header === undefined) throw new ManifestInvalid('empty: no header line');
    if (entries.size !== header.entries) {
      throw new ManifestInvalid(`the header announces ${header.entries} entries, ${entries.size} follow (truncated?)`);
    }
    return { header, entries, digest: hash.digest('hex') };
  } finally {
    await lines.return(undefined);
    await fh?.close();
  }
}

/** A manifest line is one entry: a path of at most a few KiB, JSON-escaped. Longer is not a manifest. */
const MAX_LINE_BYTES = 1024 * 1024;

/**
 * Splits a byte stream into lines at the byte 0x0A only, then decodes them as
 * UTF-8: a name holding U+2028, U+2029 or a lone '\r' (which `readline` also
 * breaks at) stays one line, and a character split across two chunks is
 * decoded whole. One '\r' before the '\n' is dropped (CRLF files); a last
 * line without '\n' is yielded, an empty one after the final '\n' is not.
 * Yields the lines of each chunk together (one await per chunk, not per line)
 * and pulls the next chunk only when the caller asks for more. The whole lines
 * of a chunk are decoded as one string and split there: a 0x0A byte is never
 * part of a multi-byte UTF-8 sequence, so this decodes each line as decoding
 * it alone would, without a Buffer and a decoder call per line.
 */
async function* splitLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<string[]> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineNo = 1;
  const tooLong = () => new ManifestInvalid(`longer than ${MAX_LINE_BYTES} bytes`, lineNo);
  const dropCr = (l: string) => (l.charCodeAt(l.length - 1) === 0x0d ? l.slice(0, -1) : l);
  for await (const chunk of chunks) {
    const last = chunk.lastIndexOf(0x0a);
    if (last !== -1) {
      // The lengths are checked on the bytes, before decoding, so an over-long line is never decoded whole.
      const batch: string[] = [];
      let start = 0;
      let tooLongAt = -1;
      for (let nl = chunk.indexOf(0x0a); nl !== -1 && nl <= last; nl = chunk.indexOf(0x0a, start)) {
        if ((start === 0 ? pendingBytes : 0) + nl - start > MAX_LINE_BYTES) {
          tooLongAt = start;
          break;
        }
        start = nl + 1;
      }
      const whole = tooLongAt === -1 ? last + 1 : tooLongAt;
      if (whole > 0) {
        const head = chunk.subarray(0, whole - 1); // without the last '\n'
        const text = (pending.length === 0 ? head : Buffer.concat([...pending, head])).toString('utf8');
        pending = [];
        pendingBytes = 0;
        for (const l of text.split('\n')) batch.push(dropCr(l));
        lineNo += batch.length;
        yield batch; // the lines before an over-long one are read (and checked) first
      }
      if (tooLongAt !== -1) throw tooLong();
    }
    const rest = last === -1 ? chunk : chunk.subarray(last + 1);
    if (rest.length > 0) {
      pending.push(rest);
      pendingBytes += rest.length;
      if (pendingBytes > MAX_LINE_BYTES) throw tooLong();
    }
  }
  if (pendingBytes > 0) yield [dropCr(Buffer.concat(pending).toString('utf8'))];
}
