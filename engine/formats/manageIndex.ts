/**
 * The one reader of a bundle's index, manage.json: opened without following a
 * link or blocking on a FIFO, a regular file, valid JSON of the index's shape.
 * The schema itself lives in common/manageIndex.ts (workflow-safe).
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { ManageIndexSchema, type ManageIndex } from '../../common/manageIndex.js';
import { errnoOf } from '../fsx.js';

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
