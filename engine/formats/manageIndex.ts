/**
 * The one reader (and the pack's writer) of a bundle's index, manage.json: read without following a
 * link or blocking on a FIFO, a regular file, valid JSON of the index's shape.
 * The schema itself lives in common/manageIndex.ts (workflow-safe).
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { INDEX_VERSION, ManageIndexSchema, type HandedFile, type ManageIndex } from '../../common/manageIndex.js';
import { errnoOf, TextAppender } from '../fsx.js';

/** The index cannot be used: missing, not a regular file, not JSON, or not an index. */
export class ManageIndexInvalid extends Error {
  override name = 'ManageIndexInvalid';
}

export async function readManageIndex(indexPath: string): Promise<ManageIndex> {
  return checkIndex(path.basename(indexPath), await readIndexJson(indexPath), ManageIndexSchema);
}

/**
 * The index as JSON, opened as readManageIndex opens it, for a reader that needs only part of it checked (a
 * summary's counts: zod's check of every entry is most of reading a full backup's index, and in a fresh process its
 * first run costs more).
 */
export async function readIndexJson(indexPath: string): Promise<unknown> {
  const name = path.basename(indexPath);
  let text: string;
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(indexPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT') throw new ManageIndexInvalid(`${name} is missing`);
    if (code === 'ELOOP') throw new ManageIndexInvalid(`${name} is a symlink, not a regular file`);
    throw err;
  }
  try {
    if (!(await fh.stat()).isFile()) throw new ManageIndexInvalid(`${name} is not a regular file`);
    text = await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ManageIndexInvalid(`${name} is not valid JSON: ${(err as Error).message}`);
  }
}

/** `json` checked against `schema` (the index's, or a part of it), or ManageIndexInvalid naming the first issues. */
export function checkIndex<T>(name: string, json: unknown, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ManageIndexInvalid(`${name} is not a valid index: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** What follows the handed files in an index: written once they are all out. */
export type IndexTail = Omit<ManageIndex, 'version' | 'bundleName' | 'files'>;

/**
 * Writes an index as its pack produces it, one handed file at a time, so that a pack holds the entries of the
 * outputs it is still filling, not of the whole bundle: a bundle of a million files lists a million entries
 * (some 150 MiB of JSON), and the pack that kept them all, then made the text in one string, peaked at over
 * 1 GiB. The text is the index's JSON (its keys in another order than JSON.stringify of the whole would give,
 * which no reader sees). Written to `<target>.tmp` and renamed into place by `finish`, so a reader never sees
 * part of one; not synced (the index lives in the transient transfer area and a retried pack rewrites it).
 */
export class IndexWriter {
  readonly #out: TextAppender;
  #first = true;

  private constructor(
    readonly target: string,
    private readonly tmp: string,
    private readonly fh: fsp.FileHandle,
  ) {
    this.#out = new TextAppender(fh.fd, 0, FLUSH_BYTES);
  }

  static async open(target: string, bundleName: string): Promise<IndexWriter> {
    const tmp = `${target}.tmp`;
    const fh = await fsp.open(tmp, fsc.O_CREAT | fsc.O_TRUNC | fsc.O_WRONLY | fsc.O_NOFOLLOW, INDEX_FILE_MODE);
    const w = new IndexWriter(target, tmp, fh);
    try {
      await fh.chmod(INDEX_FILE_MODE); // an old tmp file keeps its mode through O_CREAT
      w.#out.push(`{"version":${INDEX_VERSION},"bundleName":${JSON.stringify(bundleName)},"files":[`);
      return w;
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  /** Appends the next handed file (in hand-over order); resolves once its text is buffered or written. */
  async add(file: HandedFile): Promise<void> {
    const due = this.#out.push(`${this.#first ? '' : ','}${JSON.stringify(file)}`);
    this.#first = false;
    if (due) await this.#out.flush();
  }

  /** Writes the rest of the index and renames it into place. */
  async finish(tail: IndexTail): Promise<void> {
    const rest = JSON.stringify(tail);
    // The tail's own keys follow the files: `{"skipped":…}` becomes `],"skipped":…}`.
    this.#out.push(rest === '{}' ? ']}' : `],${rest.slice(1)}`);
    await this.#out.flush();
    await this.fh.close();
    await fsp.rename(this.tmp, this.target);
  }

  /** Drops the unfinished index. */
  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
    await fsp.rm(this.tmp, { force: true }).catch(() => {});
  }
}

/** Private to its owner, as every output of a pack. */
const INDEX_FILE_MODE = 0o600;
/** Text buffered before a write (one write per few hundred slices' records of small bundles, a few MiB for big ones). */
const FLUSH_BYTES = 1 << 20;
