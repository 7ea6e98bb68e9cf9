/**
 * Re-makes one bundle's handed-over files (tar slices and big files) from its
 * stored entries, fed one by one in restic's order (`take`). Each slice is
 * written with the packer's own header function and tar writer, so it comes
 * out byte for byte as handed over; every entry's size and SHA-256, then
 * every slice's and big file's, are checked against the index, and a file
 * gets its name only once it matched. An entry that arrives before its
 * slice's turn is spooled to a private file (never held in memory) until the
 * slices before it are complete.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { HandedFile, IndexEntry, ManageIndex } from '../../common/manageIndex.js';
import { sliceEntryHeader } from '../formats/sliceEntry.js';
import { SetMismatch } from './errors.js';
import type { TarEntry } from './snapshotReader.js';

type Place = { kind: 'slice'; slice: number; entry: number } | { kind: 'big'; file: HandedFile };

/** The slice's tar writer, drained into `<uri>.partial` through a SHA-256. */
class SliceOut {
  readonly pack = tar.pack();
  readonly hash = createHash('sha256');
  bytes = 0;
  next = 0;
  readonly written: Promise<void>;
  constructor(
    readonly handed: HandedFile,
    readonly partial: string,
  ) {
    const pack = this.pack;
    const count = (chunk: Buffer) => {
      this.hash.update(chunk);
      this.bytes += chunk.length;
    };
    this.written = pipeline(
      async function* () {
        for await (const chunk of pack as AsyncIterable<Buffer>) {
          count(chunk);
          yield chunk;
        }
      },
      createWriteStream(partial, { flags: 'wx', mode: 0o600 }),
    );
    this.written.catch(() => undefined);
    this.pack.on('error', () => undefined);
  }
}

export class BundleRebuilder {
  files = 0;
  bytes = 0;
  private readonly slices: HandedFile[];
  private readonly places = new Map<string, Place>();
  /** Entries that came before their turn: path → spool file. */
  private readonly spooled = new Map<string, string>();
  private readonly done = new Set<string>();
  private spool?: string;
  private spoolCount = 0;
  private current = 0;
  private out?: SliceOut;

  constructor(
    readonly snapshotId: string,
    readonly bundle: string,
    readonly index: ManageIndex,
    /** The bundle's folder of the set being written. */
    readonly dir: string,
  ) {
    this.slices = index.files.filter((f) => f.kind === 'tar');
    this.slices.forEach((f, s) => f.entries.forEach((e, i) => this.places.set(e.path, { kind: 'slice', slice: s, entry: i })));
    for (const f of index.files) if (f.kind === 'file') this.places.set(f.entries[0]!.path, { kind: 'big', file: f });
  }

  private bad(why: string): SetMismatch {
    return new SetMismatch(`snapshot ${this.snapshotId}, bundle ${this.bundle}: ${why}`, this.bundle);
  }

  /** Opens the first slice (and closes empty ones). */
  async start(): Promise<void> {
    await this.advance();
  }

  /** One stored entry, `path` relative to the bundle's data folder. */
  async take(t: TarEntry): Promise<void> {
    const place = this.places.get(t.path);
    if (!place) {
      // Folders made only to hold an entry (not listed themselves) are part of no output.
      if (t.type === 'directory') return;
      throw this.bad(`${t.path} is stored but not in the index`);
    }
    if (this.done.has(t.path)) throw this.bad(`${t.path} is stored twice`);
    this.done.add(t.path);
    if (place.kind === 'big') {
      this.check(place.file.entries[0]!, t);
      await this.writeBig(place.file, t);
      return;
    }
    const e = this.slices[place.slice]!.entries[place.entry]!;
    this.check(e, t);
    if (place.slice === this.current && this.out && place.entry === this.out.next) {
      await this.addToSlice(e, t.stream);
      this.out.next++;
      await this.advance();
      return;
    }
    this.spool ??= await fsp.mkdtemp(path.join(this.dir, '.spool-'));
    const file = path.join(this.spool, String(this.spoolCount++));
    await pipeline(
      async function* () {
        for await (const chunk of t.stream) yield chunk;
      },
      createWriteStream(file, { flags: 'wx', mode: 0o600 }),
    );
    this.spooled.set(t.path, file);
  }

  /** After the last entry: everything the index lists must have been made. */
  async finish(): Promise<void> {
    try {
      if (this.current < this.slices.length || this.spooled.size) {
        const missing = this.slices.flatMap((f) => f.entries).filter((e) => !this.done.has(e.path));
        throw this.bad(`the snapshot lacks ${missing.length} entr${missing.length === 1 ? 'y' : 'ies'} of the index (first: ${missing[0]?.path ?? '?'})`);
      }
      for (const f of this.index.files) {
        if (f.kind === 'file' && !this.done.has(f.entries[0]!.path)) throw this.bad(`the snapshot lacks ${f.entries[0]!.path} (${f.uri})`);
      }
    } finally {
      await this.cleanUp();
    }
  }

  /** Drops what is half made (the partial slice, the spool). */
  async cleanUp(reason?: unknown): Promise<void> {
    if (this.out) {
      this.out.pack.destroy(reason instanceof Error ? reason : new Error('rebuild stopped'));
      await this.out.written.catch(() => undefined);
      await fsp.rm(this.out.partial, { force: true });
      this.out = undefined;
    }
    if (this.spool) await fsp.rm(this.spool, { recursive: true, force: true });
    this.spool = undefined;
  }

  private check(e: IndexEntry, t: { type: string; size: number }): void {
    const want = e.kind === 'dir' ? 'directory' : 'file';
    if (t.type !== want) throw this.bad(`${e.path} is stored as a ${t.type}, the index says ${e.kind}`);
    if (e.kind === 'file' && t.size !== e.size) throw this.bad(`${e.path} is stored with ${t.size} bytes, the index says ${e.size}`);
  }

  /** Writes one entry into the current slice from `data`, checking its SHA-256. */
  private async addToSlice(e: IndexEntry, data: AsyncIterable<Buffer>): Promise<void> {
    const s = this.out!;
    if (e.kind === 'dir') {
      await new Promise<void>((resolve, reject) => {
        s.pack.entry(sliceEntryHeader(e), (err) => (err ? reject(err) : resolve())).end(undefined);
      });
      return;
    }
    const hash = createHash('sha256');
    let sink!: ReturnType<tar.Pack['entry']>;
    const entryDone = new Promise<void>((resolve, reject) => {
      sink = s.pack.entry(sliceEntryHeader(e), (err) => (err ? reject(err) : resolve()));
    });
    entryDone.catch(() => undefined);
    sink.on('error', () => undefined);
    let n = 0;
    for await (const chunk of data) {
      hash.update(chunk);
      n += chunk.length;
      if (n > e.size) throw this.bad(`${e.path} holds more bytes than the index says (${e.size})`);
      if (!sink.write(chunk)) {
        await new Promise<void>((resolve, reject) => {
          sink.once('drain', resolve);
          entryDone.catch(reject);
        });
      }
    }
    if (n !== e.size) throw this.bad(`${e.path} holds ${n} bytes, the index says ${e.size}`);
    if (hash.digest('hex') !== e.sha256) throw this.bad(`${e.path}'s SHA-256 differs from the index`);
    sink.end(undefined);
    await entryDone;
    this.files++;
    this.bytes += n;
  }

  private async closeSlice(): Promise<void> {
    const s = this.out!;
    s.pack.finalize();
    await s.written;
    const f = s.handed;
    if (s.bytes !== f.size) throw this.bad(`the re-made ${f.uri} has ${s.bytes} bytes, the index says ${f.size}`);
    if (s.hash.digest('hex') !== f.sha256) throw this.bad(`the re-made ${f.uri} differs from the one handed over (SHA-256)`);
    await fsp.rename(s.partial, path.join(this.dir, f.uri));
    this.out = undefined;
    this.current++;
  }

  /** Moves on through the slices: writes spooled entries whose turn came, closes full slices. */
  private async advance(): Promise<void> {
    for (;;) {
      if (this.current >= this.slices.length) return;
      if (!this.out) {
        const f = this.slices[this.current]!;
        this.out = new SliceOut(f, path.join(this.dir, `${f.uri}.partial`));
      }
      const s = this.out;
      if (s.next >= s.handed.entries.length) {
        await this.closeSlice();
        continue;
      }
      const e = s.handed.entries[s.next]!;
      const file = this.spooled.get(e.path);
      if (!file) return;
      await this.addToSlice(e, createReadStream(file) as AsyncIterable<Buffer>);
      this.spooled.delete(e.path);
      await fsp.rm(file, { force: true });
      s.next++;
    }
  }

  private async writeBig(f: HandedFile, t: TarEntry): Promise<void> {
    const e = f.entries[0]!;
    const partial = path.join(this.dir, `${f.uri}.partial`);
    const hash = createHash('sha256');
    let n = 0;
    try {
      await pipeline(
        async function* () {
          for await (const chunk of t.stream) {
            hash.update(chunk);
            n += chunk.length;
            yield chunk;
          }
        },
        createWriteStream(partial, { flags: 'wx', mode: 0o600 }),
      );
      const sha = hash.digest('hex');
      if (n !== f.size || n !== e.size) throw this.bad(`${e.path} (${f.uri}) holds ${n} bytes, the index says ${f.size}`);
      if (sha !== f.sha256 || sha !== e.sha256) throw this.bad(`${e.path} (${f.uri}): its SHA-256 differs from the index`);
    } catch (err) {
      await fsp.rm(partial, { force: true });
      throw err;
    }
    await fsp.rename(partial, path.join(this.dir, f.uri));
    this.files++;
    this.bytes += n;
  }
}
