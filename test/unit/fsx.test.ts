import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ancestors, copyHashing, removeTree, writeAtomically } from '../../engine/fsx.js';

const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohbackup-fsx-'));
afterAll(() => fsp.rm(base, { recursive: true, force: true }));

describe('fsx', () => {
  it('ancestors: every proper ancestor, outermost first, none for a top-level name', () => {
    expect([...ancestors('a/b/c')]).toEqual(['a', 'a/b']);
    expect([...ancestors('a')]).toEqual([]);
  });

  it('copyHashing copies a file from its start and answers its length and SHA-256', async () => {
    const data = Buffer.alloc(300 * 1024, 7);
    const src = path.join(base, 'src');
    await fsp.writeFile(src, data);
    const fh = await fsp.open(src, 'r');
    await fh.read(Buffer.alloc(10), 0, 10, null); // the copy starts at 0 whatever the position
    const out = await fsp.open(path.join(base, 'dst'), 'w');
    const copied = await copyHashing(fh, out);
    await Promise.all([fh.close(), out.close()]);
    expect(copied).toEqual({ bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    expect((await fsp.readFile(path.join(base, 'dst'))).equals(data)).toBe(true);
  });

  it('copyHashing stops when its signal is aborted', async () => {
    const src = path.join(base, 'src2');
    await fsp.writeFile(src, 'x');
    const fh = await fsp.open(src, 'r');
    const out = await fsp.open(path.join(base, 'dst2'), 'w');
    await expect(copyHashing(fh, out, AbortSignal.abort(new Error('stop')))).rejects.toThrow('stop');
    await Promise.all([fh.close(), out.close()]);
  });

  it('removeTree removes read-only folders; writeAtomically leaves no temporary file', async () => {
    const tree = path.join(base, 'ro');
    await fsp.mkdir(path.join(tree, 'inner'), { recursive: true });
    await writeAtomically(path.join(tree, 'inner', 'f'), 'text');
    expect(await fsp.readdir(path.join(tree, 'inner'))).toEqual(['f']);
    await fsp.chmod(path.join(tree, 'inner'), 0o500);
    await removeTree(tree);
    await expect(fsp.lstat(tree)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
