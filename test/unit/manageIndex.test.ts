import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { INDEX_VERSION } from '../../common/manageIndex.js';
import { ManageIndexInvalid, readManageIndex } from '../../engine/formats/manageIndex.js';

const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohbackup-index-'));
afterAll(() => fsp.rm(base, { recursive: true, force: true }));

const valid = {
  version: INDEX_VERSION,
  bundleName: 'com.example',
  createdAt: new Date(0).toISOString(),
  files: [],
  skipped: [],
  totals: { files: 0, dirs: 0, bytes: 0 },
};

describe('readManageIndex', () => {
  it('reads a valid index', async () => {
    const p = path.join(base, 'ok.json');
    await fsp.writeFile(p, JSON.stringify(valid));
    expect(await readManageIndex(p)).toMatchObject({ bundleName: 'com.example', files: [] });
  });

  it.each([
    ['missing', async () => path.join(base, 'none.json'), /is missing/],
    [
      'a symlink',
      async () => {
        const p = path.join(base, 'link.json');
        await fsp.writeFile(path.join(base, 'target.json'), JSON.stringify(valid));
        await fsp.symlink(path.join(base, 'target.json'), p);
        return p;
      },
      /is a symlink/,
    ],
    [
      'a folder',
      async () => {
        const p = path.join(base, 'dir.json');
        await fsp.mkdir(p);
        return p;
      },
      /is not a regular file/,
    ],
    [
      'not JSON',
      async () => {
        const p = path.join(base, 'bad.json');
        await fsp.writeFile(p, '{');
        return p;
      },
      /is not valid JSON/,
    ],
    [
      'not an index',
      async () => {
        const p = path.join(base, 'shape.json');
        await fsp.writeFile(p, JSON.stringify({ ...valid, files: 3 }));
        return p;
      },
      /is not a valid index: files/,
    ],
  ])('refuses an index that is %s', async (_what, make, message) => {
    const p = await make();
    const err = await readManageIndex(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManageIndexInvalid);
    expect((err as Error).message).toMatch(message);
  });
});
