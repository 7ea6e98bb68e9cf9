/**
 * A handed tar slice read synchronously, a chunk at a time into one buffer,
 * every byte of it hashed as it is read. The blocks are taken apart as
 * tar-stream's extract does (its own header decoder; pax and GNU long names
 * applied, zero blocks skipped, "Unexpected end of data" when the file ends
 * inside a header or an entry), without its streams: a stream, a promise and
 * buffer copies per entry were most of a restore's parsing cost, and reads of
 * a page-cached slice cost less than their thread-pool round trips.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { decodeHeader, decodeLongPath, decodePax, type DecodedHeader } from '../formats/tarHeader.js';

const BLOCK = 512;
/** tar-stream's bound on a pax or GNU long header's body. */
const MAX_HEADER_SIZE = 4 * 1024 * 1024;

/** What follows an entry's data up to the next 512-byte boundary. */
const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

export class SliceReader {
  /** SHA-256 of every byte read so far. */
  readonly hash = createHash('sha256');
  /** Bytes read so far. */
  bytes = 0;
  /** The unconsumed bytes are buf[start, end). */
  private start = 0;
  private end = 0;
  private eof = false;
  /** Carried from one header to the next, as tar-stream does. */
  private paxGlobal: Record<string, string> | undefined;

  /** `fd` is read from its current position (a fresh descriptor: the start); `buf` must hold at least a block. */
  constructor(
    private readonly fd: number,
    private readonly buf: Buffer,
  ) {}

  /** Makes at least `n` (at most the buffer's size) bytes available; false when the file ends first. */
  private fill(n: number): boolean {
    if (this.end - this.start >= n) return true;
    if (this.start > 0) {
      this.buf.copy(this.buf, 0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    while (this.end < n && !this.eof) {
      const got = readSync(this.fd, this.buf, this.end, this.buf.length - this.end, null);
      if (got === 0) this.eof = true;
      else {
        this.hash.update(this.buf.subarray(this.end, this.end + got));
        this.bytes += got;
        this.end += got;
      }
    }
    return this.end - this.start >= n;
  }

  /** The next entry's header, long names and pax fields applied; undefined at the end of the file. */
  nextHeader(): DecodedHeader | undefined {
    let pax: Record<string, string> | undefined;
    let longPath: string | undefined;
    for (;;) {
      if (!this.fill(BLOCK)) {
        if (this.end > this.start) throw new Error('Unexpected end of data');
        return undefined;
      }
      const header = decodeHeader(this.buf.subarray(this.start, this.start + BLOCK));
      this.start += BLOCK;
      if (!header) continue;
      switch (header.type) {
        case 'gnu-long-path':
        case 'gnu-long-link-path':
        case 'pax-global-header':
        case 'pax-header': {
          if (header.size > MAX_HEADER_SIZE) throw new Error('Header exceeds max size');
          const body = Buffer.allocUnsafe(header.size);
          for (let off = 0; off < body.length;) {
            const part = this.data(body.length - off);
            part.copy(body, off);
            off += part.length;
          }
          this.skip(padding(header.size));
          if (header.type === 'gnu-long-path') longPath = decodeLongPath(body);
          else if (header.type === 'pax-global-header') this.paxGlobal = decodePax(body);
          else if (header.type === 'pax-header') pax = { ...this.paxGlobal, ...decodePax(body) };
          continue;
        }
      }
      if (longPath !== undefined) header.name = longPath;
      if (pax?.path) header.name = pax.path;
      if (pax?.size) header.size = parseInt(pax.size, 10);
      if (!(header.size >= 0)) throw new Error('Invalid header');
      return header;
    }
  }

  /**
   * Up to `max` bytes of what follows, as a view into the buffer: valid only
   * until the next call. Throws when the file has ended.
   */
  data(max: number): Buffer {
    if (!this.fill(1)) throw new Error('Unexpected end of data');
    const n = Math.min(max, this.end - this.start);
    const view = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    return view;
  }

  /** Passes over `n` bytes (an entry's padding). */
  skip(n: number): void {
    for (let left = n; left > 0;) left -= this.data(left).length;
  }

  /** Passes over the padding after an entry of `size` bytes. */
  endEntry(size: number): void {
    this.skip(padding(size));
  }

  /** The SHA-256 (hex) of everything read; only once. */
  digest(): string {
    return this.hash.digest('hex');
  }
}
