/**
 * Incremental backups end to end, without Temporal: a full pack writing a
 * manifest, changes to the tree, an incremental pack against that manifest,
 * then a full restore followed by a merge of the increment. Also: resuming an
 * interrupted incremental pack, and tampered increments.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { applyRestore, RestoreRejected, type ApplyRestoreOptions } from '../../engine/unpack/index.js';
import { readManifest } from '../../engine/formats/manifest.js';
import { packBundle, type PackOptions, type PackSummary } from '../../engine/pack/index.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { walkBundle } from '../../engine/walk.js';
import { ErrorCode } from '../../common/errors.js';
import type { ManageIndex } from '../../common/manageIndex.js';
import type { ManifestEntry } from '../../common/manifest.js';
import { extractTarEntries } from '../helpers/extractTar.js';

const KiB = 1024;
const LIMITS = { bigFileBytes: 64 * KiB, sliceBytes: 16 * KiB, sliceEntries: 5 };
let root: string;

// ---- helpers ----------------------------------------------------------------------

async function sha256File(p: string): Promise<string> {
  return createHash('sha256')
    .update(await fsp.readFile(p))
    .digest('hex');
}

/** Epoch seconds with whole milliseconds, so stat's mtimeMs is exactly this × 1000. */
const T = (iso: string, plusMs = 0) => (Date.parse(iso) + plusMs) / 1000;

async function write(dir: string, rel: string, content: Buffer | string, mode = 0o644, mtime = T('2021-01-01T00:00:00Z', rel.length)): Promise<void> {
  const p = path.join(dir, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, content);
  await fsp.chmod(p, mode);
  await fsp.utimes(p, mtime, mtime);
}

/** What the manifest of `dir` must say: every entry in walk order with its real SHA-256. */
async function treeManifest(dir: string): Promise<ManifestEntry[]> {
  const out: ManifestEntry[] = [];
  for await (const item of walkBundle(dir, { excludes: [] })) {
    if (item.type !== 'entry') continue;
    const sha256 = item.kind === 'file' ? await sha256File(item.absPath) : '';
    out.push({ path: item.path, kind: item.kind, mode: item.mode, size: item.size, mtimeMs: item.mtimeMs, sha256 });
  }
  return out;
}

interface Node {
  kind: 'file' | 'dir' | 'other';
  mode: number;
  size: number;
  mtimeMs: number;
  sha256: string;
  ino: number;
}

/** Everything below `dir`, by relative path. */
async function snapshot(dir: string): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  async function walk(abs: string, rel: string): Promise<void> {
    for (const name of (await fsp.readdir(abs)).sort()) {
      const a = path.join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(a);
      const n: Node = { kind: 'other', mode: st.mode & 0o7777, size: 0, mtimeMs: st.mtimeMs, sha256: '', ino: st.ino };
      if (st.isDirectory()) {
        out.set(r, { ...n, kind: 'dir' });
        await walk(a, r);
      } else if (st.isFile()) {
        out.set(r, { ...n, kind: 'file', size: st.size, sha256: await sha256File(a) });
      } else {
        out.set(r, n);
      }
    }
  }
  await walk(dir, '');
  return out;
}

/** `dir` holds exactly the manifest's entries: kinds, bytes (by SHA-256), modes, mtimes. */
async function expectTreeIs(dir: string, want: ManifestEntry[]): Promise<void> {
  const got = await snapshot(dir);
  expect([...got.keys()].sort()).toEqual(want.map((e) => e.path).sort());
  for (const e of want) {
    const g = got.get(e.path)!;
    expect({ path: e.path, kind: g.kind, mode: g.mode, size: g.size, sha256: g.sha256 }).toEqual({
      path: e.path,
      kind: e.kind,
      mode: e.mode,
      size: e.size,
      sha256: e.sha256,
    });
    expect(Math.abs(g.mtimeMs - e.mtimeMs), `${e.path} mtime`).toBeLessThan(0.001);
  }
}

/** Exactly as before: every item, inode and mtime included. */
async function frozen(dir: string): Promise<string[]> {
  return [...(await snapshot(dir))].map(([p, n]) => JSON.stringify([p, n]));
}

/** Every file entry the hand-over carries, checked against the bytes actually in the slices and big files. */
async function packedFiles(out: string, index: ManageIndex): Promise<string[]> {
  const paths: string[] = [];
  for (const f of index.files) {
    if (f.kind === 'tar') {
      const got = await extractTarEntries(path.join(out, f.uri));
      expect(got.map((g) => g.name.replace(/\/$/, ''))).toEqual(f.entries.map((e) => e.path));
      for (const [i, e] of f.entries.entries()) if (e.kind === 'file') expect(got[i]!.sha256).toBe(e.sha256);
    } else {
      expect(await sha256File(path.join(out, f.uri))).toBe(f.entries[0]!.sha256);
    }
    for (const e of f.entries) if (e.kind === 'file') paths.push(e.path);
  }
  return paths.sort();
}

function indexDirs(index: ManageIndex): string[] {
  return index.files
    .flatMap((f) => f.entries)
    .filter((e) => e.kind === 'dir')
    .map((e) => e.path)
    .sort();
}

async function expectRejected(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RestoreRejected);
  expect((err as RestoreRejected).code).toBe(code);
  if (message) expect((err as RestoreRejected).message).toMatch(message);
}

interface Layout {
  base: string;
  src: string;
  dataDir: string;
  stagingDir: string;
  /** Packs go to <packs>/<name>, their manifests to <packs>/<name>.jsonl. */
  packs: string;
}

async function layout(name: string): Promise<Layout> {
  const base = await fsp.mkdtemp(path.join(root, `${name}-`));
  const l = {
    base,
    src: path.join(base, 'src'),
    dataDir: path.join(base, 'bundle', 'data'),
    stagingDir: path.join(base, 'bundle', 'backup', 'restore', 'staging'),
    packs: path.join(base, 'packs'),
  };
  await fsp.mkdir(l.src, { recursive: true });
  await fsp.mkdir(l.packs, { recursive: true });
  return l;
}

async function runPack(
  l: Layout,
  name: string,
  more: Partial<PackOptions> = {},
): Promise<{ summary: PackSummary; index: ManageIndex; out: string; manifestPath: string }> {
  const out = path.join(l.packs, name);
  const manifestPath = `${out}.jsonl`;
  const summary = await packBundle({
    bundleName: 'com.example.inc',
    dataDir: l.src,
    outDir: out,
    profile: { excludes: [] },
    limits: LIMITS,
    manifestPath,
    ...more,
  });
  return { summary, index: await readManageIndex(summary.indexPath), out, manifestPath };
}

let restores = 0;
/** Restores from a copy of a pack's outputs (a restore consumes its big files). */
async function restore(l: Layout, out: string, mode: ApplyRestoreOptions['mode'], edit?: (dir: string) => Promise<void>) {
  const restoreDir = path.join(l.base, 'bundle', 'backup', 'restore', `in-${restores++}`);
  await fsp.cp(out, restoreDir, { recursive: true });
  await edit?.(restoreDir);
  return applyRestore({ bundleName: 'com.example.inc', restoreDir, dataDir: l.dataDir, stagingDir: l.stagingDir, mode });
}

async function editIndex(dir: string, change: (index: ManageIndex) => void): Promise<void> {
  const p = path.join(dir, 'manage.json');
  const index = JSON.parse(await fsp.readFile(p, 'utf8')) as ManageIndex;
  change(index);
  await fsp.writeFile(p, JSON.stringify(index));
}

async function flipLastByte(p: string, back = 1030): Promise<void> {
  const fh = await fsp.open(p, 'r+');
  try {
    const { size } = await fh.stat();
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, size - back);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, size - back);
  } finally {
    await fh.close();
  }
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'packIncremental-'));
});

afterAll(async () => {
  const fix = async (p: string): Promise<void> => {
    const st = await fsp.lstat(p);
    if (!st.isDirectory()) return;
    await fsp.chmod(p, 0o700);
    for (const n of await fsp.readdir(p)) await fix(path.join(p, n));
  };
  await fix(root);
  await fsp.rm(root, { recursive: true, force: true });
});

// ---- the chain ------------------------------------------------------------------------

describe('incremental backup and merge restore', () => {
  let l: Layout;
  let full: Awaited<ReturnType<typeof runPack>>;
  let inc: Awaited<ReturnType<typeof runPack>>;
  let fullTree: ManifestEntry[];
  let changedTree: ManifestEntry[];
  const sneakyOld = randomBytes(3000);
  const NEW = T('2022-06-01T12:00:00Z');

  beforeAll(async () => {
    l = await layout('chain');
    const s = l.src;
    await write(s, 'keep.txt', 'unchanged\n');
    await write(s, 'keep/deep/k.bin', randomBytes(4000), 0o600);
    await write(s, 'edit.txt', 'short');
    await write(s, 'same-size.txt', 'AAAA-1');
    await write(s, 'touch.txt', 'same bytes, new mtime');
    await write(s, 'chmod.txt', 'same bytes, new mode', 0o644);
    await write(s, 'sneaky.bin', sneakyOld);
    await write(s, 'del.txt', 'to be deleted');
    await write(s, 'gone/x.txt', 'x');
    await write(s, 'gone/sub/y.txt', 'y');
    await write(s, 'ren-src.txt', 'renamed content');
    await write(s, 'flip', 'a file that becomes a folder');
    await write(s, 'flop/z.txt', 'a folder that becomes a file');
    await write(s, 'big/huge.bin', randomBytes(200 * KiB)); // unchanged big file
    await write(s, 'big/edit.bin', randomBytes(100 * KiB)); // edited big file
    await write(s, 'nl\nname.txt', 'newline in the name');
    for (let i = 0; i < 12; i++) await write(s, `many/m${String(i).padStart(2, '0')}.bin`, randomBytes(700 + i * 50));
    await fsp.mkdir(path.join(s, 'emptyOld'));
    await fsp.chmod(path.join(s, 'emptyOld'), 0o750);
    // Folders: fixed modes and mtimes, deepest first.
    for (const d of ['keep/deep', 'gone/sub', 'keep', 'gone', 'flop', 'big', 'many', 'emptyOld']) {
      await fsp.utimes(path.join(s, d), T('2020-05-05T05:05:05Z', d.length), T('2020-05-05T05:05:05Z', d.length));
    }
    fullTree = await treeManifest(s);
    full = await runPack(l, 'full', { time: 1_000 });

    // The changes.
    await write(s, 'edit.txt', 'a longer content now', 0o644, NEW);
    await write(s, 'same-size.txt', 'BBBB-2', 0o644, NEW); // same size, new bytes: hashed, differs, packed
    await fsp.utimes(path.join(s, 'touch.txt'), NEW, NEW); // touched: same bytes
    await fsp.chmod(path.join(s, 'chmod.txt'), 0o600); // mode only (size and mtime as before)
    const sneakyStat = await fsp.stat(path.join(s, 'sneaky.bin'));
    await fsp.writeFile(path.join(s, 'sneaky.bin'), randomBytes(sneakyOld.length)); // new bytes, same size…
    await fsp.utimes(path.join(s, 'sneaky.bin'), sneakyStat.atime, sneakyStat.mtime); // …and the same mtime
    expect((await fsp.stat(path.join(s, 'sneaky.bin'))).mtimeMs).toBe(sneakyStat.mtimeMs);
    await fsp.rm(path.join(s, 'del.txt'));
    await fsp.rm(path.join(s, 'gone'), { recursive: true });
    await fsp.rename(path.join(s, 'ren-src.txt'), path.join(s, 'ren-dst.txt'));
    await fsp.rm(path.join(s, 'flip'));
    await write(s, 'flip/inner.txt', 'now a folder', 0o600, NEW);
    await fsp.rm(path.join(s, 'flop'), { recursive: true });
    await write(s, 'flop', 'now a file', 0o640, NEW);
    await write(s, 'big/edit.bin', randomBytes(100 * KiB), 0o644, NEW);
    await write(s, 'big/new.bin', randomBytes(90 * KiB), 0o600, NEW); // new big file
    await write(s, 'added/a.txt', 'new file', 0o600, NEW);
    await write(s, 'added.bin', randomBytes(1234), 0o644, NEW);
    await write(s, 'nl\nname.txt', 'newline in the name, edited', 0o644, NEW);
    await fsp.mkdir(path.join(s, 'emptyNew'), { mode: 0o700 });
    changedTree = await treeManifest(s);

    const base = await readManifest(full.manifestPath);
    inc = await runPack(l, 'inc', { base: base.entries, baseTime: base.header.time, time: 2_000 });
  });

  it('a full pack writes a manifest of the whole tree and no incremental block', async () => {
    const m = await readManifest(full.manifestPath);
    expect(m.header).toEqual({ format: 'ohbackup-manifest', version: 1, bundleName: 'com.example.inc', time: 1_000, entries: fullTree.length });
    expect([...m.entries.values()]).toEqual(fullTree);
    expect((await fsp.stat(full.manifestPath)).mode & 0o777).toBe(0o600);
    expect(full.index.incremental).toBeUndefined();
    const files = fullTree.filter((e) => e.kind === 'file').length;
    expect(full.summary).toMatchObject({ files, changed: files, unchanged: 0, deleted: 0, manifestPath: full.manifestPath });
    expect(await packedFiles(full.out, full.index)).toEqual(
      fullTree
        .filter((e) => e.kind === 'file')
        .map((e) => e.path)
        .sort(),
    );
  });

  it('packs exactly the new, edited and renamed-to files, every folder, and records deletions and touched files', async () => {
    const packed = [
      'added.bin',
      'added/a.txt',
      'big/edit.bin',
      'big/new.bin',
      'edit.txt',
      'flip/inner.txt',
      'flop',
      'nl\nname.txt',
      'ren-dst.txt',
      'same-size.txt',
    ];
    expect(await packedFiles(inc.out, inc.index)).toEqual(packed.sort());
    expect(
      inc.index.files
        .filter((f) => f.kind === 'file')
        .map((f) => f.entries[0]!.path)
        .sort(),
    ).toEqual(['big/edit.bin', 'big/new.bin']);
    // Every current folder is in the slices, new empty ones included.
    expect(indexDirs(inc.index)).toEqual(
      changedTree
        .filter((e) => e.kind === 'dir')
        .map((e) => e.path)
        .sort(),
    );
    expect(indexDirs(inc.index)).toContain('emptyNew');

    expect(inc.index.incremental?.baseTime).toBe(1_000);
    expect([...inc.index.incremental!.deleted].sort((a, b) => (a.path < b.path ? -1 : 1))).toEqual([
      { path: 'del.txt', kind: 'file' },
      { path: 'flip', kind: 'file' },
      { path: 'flop', kind: 'dir' }, // flop/z.txt goes with its folder
      { path: 'gone', kind: 'dir' }, // and so do gone/x.txt, gone/sub, gone/sub/y.txt
      { path: 'ren-src.txt', kind: 'file' },
    ]);
    const byPath = new Map(changedTree.map((e) => [e.path, e]));
    expect(inc.index.incremental!.touched).toEqual([byPath.get('chmod.txt'), byPath.get('touch.txt')]);

    const files = changedTree.filter((e) => e.kind === 'file').length;
    expect(inc.summary).toMatchObject({ changed: packed.length, unchanged: files - packed.length, deleted: 5, files: packed.length });
    expect(inc.summary.unchanged).toBe(files - packed.length); // touch.txt, chmod.txt, sneaky.bin, keep.txt, …
  });

  it('the new manifest is the tree, except that an unchanged-looking file keeps the base hash (it was not read)', async () => {
    const m = await readManifest(inc.manifestPath);
    expect(m.header).toMatchObject({ bundleName: 'com.example.inc', time: 2_000, entries: changedTree.length });
    const got = [...m.entries.values()];
    const oldSneaky = fullTree.find((e) => e.path === 'sneaky.bin')!;
    const nowSneaky = changedTree.find((e) => e.path === 'sneaky.bin')!;
    expect(nowSneaky.sha256).not.toBe(oldSneaky.sha256);
    expect(m.entries.get('sneaky.bin')).toEqual(oldSneaky); // the base's hash: proof it was never read
    expect(got).toEqual(changedTree.map((e) => (e.path === 'sneaky.bin' ? oldSneaky : e)));
    expect(m.entries.get('touch.txt')?.mtimeMs).toBe(NEW * 1000);
  });

  it('restores the full backup, then merges the increment into exactly the changed tree; tampered increments change nothing', async () => {
    await expect(fsp.lstat(l.dataDir)).rejects.toMatchObject({ code: 'ENOENT' });
    const r0 = await restore(l, full.out, 'apply');
    expect(r0.merged).toBeUndefined();
    await expectTreeIs(l.dataDir, fullTree);

    const before = await frozen(l.dataDir);
    const editFd = await fsp.open(path.join(l.dataDir, 'edit.txt'), 'r'); // the old inode of a file the merge replaces
    const keepIno = (await fsp.stat(path.join(l.dataDir, 'keep/deep/k.bin'))).ino;
    try {
      // Tampered or wrong increments: rejected, dataDir exactly as before (inodes, mtimes, bytes), no staging left.
      const slices = inc.index.files.filter((f) => f.kind === 'tar');
      await expectRejected(
        restore(l, inc.out, 'merge', (d) => flipLastByte(path.join(d, slices.at(-1)!.uri))),
        ErrorCode.UNTAR_FAILED,
      );
      await expectRejected(
        restore(l, inc.out, 'merge', (d) => flipLastByte(path.join(d, inc.index.files.find((f) => f.kind === 'file')!.uri), 10)),
        ErrorCode.UNTAR_FAILED,
      );
      await expectRejected(
        restore(l, inc.out, 'merge', (d) => editIndex(d, (i) => i.incremental!.deleted.push({ path: '../outside', kind: 'dir' }))),
        ErrorCode.UNTAR_FAILED,
        /deleted path "\.\.\/outside" refused/,
      );
      await expectRejected(
        restore(l, inc.out, 'merge', (d) => editIndex(d, (i) => i.incremental!.deleted.push({ path: '/etc', kind: 'dir' }))),
        ErrorCode.UNTAR_FAILED,
        /absolute/,
      );
      await expectRejected(
        restore(l, inc.out, 'merge', (d) => editIndex(d, (i) => (i.incremental!.touched![0]!.sha256 = 'f'.repeat(64)))),
        ErrorCode.INVALID_ARGUMENT,
        /base version/,
      );
      await expectRejected(restore(l, full.out, 'merge'), ErrorCode.INVALID_ARGUMENT, /not an increment/);
      await expectRejected(restore(l, inc.out, 'apply'), ErrorCode.INVALID_ARGUMENT, /only 'merge'/);
      expect(await frozen(l.dataDir)).toEqual(before);
      await expect(fsp.lstat(l.stagingDir)).rejects.toMatchObject({ code: 'ENOENT' });

      // The real merge, as the restore activity asks for it: the index says it is an increment.
      const r = await restore(l, inc.out, 'byIndex');
      expect(r.appliedTo).toBe(l.dataDir);
      expect(r.merged).toMatchObject({ touched: 2, deleted: 5, copied: 0 });
      expect(r.merged!.linked).toBe(fullTree.filter((e) => e.kind === 'file').length);
      // The tree the new manifest describes: the changed tree, sneaky.bin as the base had it.
      await expectTreeIs(l.dataDir, [...(await readManifest(inc.manifestPath)).entries.values()]);
      const sneaky = changedTree.find((e) => e.path === 'sneaky.bin')!;
      await expectTreeIs(
        l.dataDir,
        changedTree.map((e) => (e.path === 'sneaky.bin' ? { ...sneaky, sha256: fullTree.find((f) => f.path === e.path)!.sha256 } : e)),
      );
      expect(await fsp.readFile(path.join(l.dataDir, 'sneaky.bin'))).toEqual(sneakyOld);

      // Unchanged files were carried over as hard links; the replaced file's old inode was never written to.
      expect((await fsp.stat(path.join(l.dataDir, 'keep/deep/k.bin'))).ino).toBe(keepIno);
      expect(await editFd.readFile('utf8')).toBe('short');
    } finally {
      await editFd.close();
    }
  });
});

describe('merge onto a data folder that moved on since the restore', () => {
  it('keeps extra files, drops symlinks without following them, lets the increment win, copies where linking fails', async () => {
    const l = await layout('diverged');
    await write(l.src, 'a.txt', 'a v1');
    await write(l.src, 'd/b.txt', 'b stays');
    await write(l.src, 'd/c.txt', 'c stays');
    const full = await runPack(l, 'full');
    await write(l.src, 'a.txt', 'a v2', 0o600, T('2023-03-03T00:00:00Z'));
    await write(l.src, 'x', 'a new file where the data folder grew a folder', 0o644, T('2023-03-03T00:00:00Z'));
    const base = await readManifest(full.manifestPath);
    const inc = await runPack(l, 'inc', { base: base.entries, baseTime: base.header.time });
    expect(await packedFiles(inc.out, inc.index)).toEqual(['a.txt', 'x']);

    await restore(l, full.out, 'apply');
    // The app went on: an extra file, a folder in the increment's way, a symlink out of the tree.
    const outside = path.join(l.base, 'outside');
    await fsp.mkdir(outside);
    await fsp.writeFile(path.join(outside, 'secret'), 'do not touch');
    await write(l.dataDir, 'extra.txt', 'the app wrote this later', 0o600, T('2023-04-04T00:00:00Z'));
    await write(l.dataDir, 'x/junk.txt', 'in the way');
    await fsp.symlink(outside, path.join(l.dataDir, 'd/link'));
    await fsp.symlink(path.join(outside, 'secret'), path.join(l.dataDir, 'file-link'));

    const original = fsp.link.bind(fsp);
    const spy = vi.spyOn(fsp, 'link').mockImplementation(async (from, to) => {
      if (String(from).endsWith('c.txt')) throw Object.assign(new Error('EXDEV: cross-device link'), { code: 'EXDEV', syscall: 'link' });
      return original(from, to);
    });
    let r: Awaited<ReturnType<typeof applyRestore>>;
    try {
      r = await restore(l, inc.out, 'merge');
    } finally {
      spy.mockRestore();
    }
    expect(r.merged).toEqual({ linked: 4, copied: 1, deleted: 0, touched: 0 });
    const extra = {
      path: 'extra.txt',
      kind: 'file' as const,
      mode: 0o600,
      size: 24,
      mtimeMs: T('2023-04-04T00:00:00Z') * 1000,
      sha256: createHash('sha256').update('the app wrote this later').digest('hex'),
    };
    await expectTreeIs(l.dataDir, [...(await treeManifest(l.src)), extra]);
    expect(await fsp.readFile(path.join(outside, 'secret'), 'utf8')).toBe('do not touch');
    expect(await fsp.readdir(outside)).toEqual(['secret']);
  });
});

// ---- resuming an incremental pack ---------------------------------------------------

class Killed extends Error {}

describe('incremental pack: resume', () => {
  const RL = { bigFileBytes: 8 * KiB, sliceBytes: 64 * KiB, sliceEntries: 3 };

  /** c/NN-chg (changed after the full backup) and c/NN-same (unchanged), interleaved; a big changed file in the middle. */
  async function makeTree(l: Layout): Promise<void> {
    for (let i = 0; i < 16; i++) {
      const n = String(i).padStart(2, '0');
      await write(l.src, `c/${n}-chg.txt`, `v1 ${n}`);
      await write(l.src, `c/${n}-same.txt`, `same ${n}`);
    }
    await write(l.src, 'c/08-big.bin', randomBytes(20 * KiB));
    await write(l.src, 'z/last.txt', 'last');
  }
  async function change(l: Layout): Promise<void> {
    for (let i = 0; i < 16; i++) {
      const n = String(i).padStart(2, '0');
      await write(l.src, `c/${n}-chg.txt`, `v2 ${n} longer`, 0o644, T('2023-01-01T00:00:00Z'));
    }
    await write(l.src, 'c/08-big.bin', randomBytes(20 * KiB), 0o644, T('2023-01-01T00:00:00Z'));
  }

  it('a killed incremental pack resumes to the same index and manifest', async () => {
    const l = await layout('resume-same');
    await makeTree(l);
    const full = await runPack(l, 'full', { limits: RL, time: 10 });
    await change(l);
    const base = (await readManifest(full.manifestPath)).entries;
    const opts: Partial<PackOptions> = { limits: RL, base, baseTime: 10, time: 20 };
    const ref = await runPack(l, 'ref', opts);
    expect(ref.index.files.length).toBeGreaterThan(4);
    const refManifest = await fsp.readFile(ref.manifestPath, 'utf8');

    for (let k = 1; k < ref.index.files.length; k++) {
      const name = `kill-${k}`;
      let killed = false;
      await expect(
        runPack(l, name, {
          ...opts,
          onProgress: (p) => {
            if (!killed && p.phase === 'pack' && p.durable >= k) {
              killed = true;
              throw new Killed();
            }
          },
        }),
      ).rejects.toBeInstanceOf(Killed);
      await expect(fsp.lstat(path.join(l.packs, `${name}.jsonl`))).rejects.toMatchObject({ code: 'ENOENT' });
      const again = await runPack(l, name, { ...opts, resume: true });
      expect(again.summary.resumed, `killed after ${k}`).toMatchObject({ kept: expect.any(Number) });
      const { createdAt: _a, ...a } = again.index;
      const { createdAt: _b, ...b } = ref.index;
      expect(a, `killed after ${k}`).toEqual(b);
      expect(await fsp.readFile(again.manifestPath, 'utf8'), `killed after ${k}`).toBe(refManifest);
      expect(again.summary).toMatchObject({ changed: ref.summary.changed, unchanged: ref.summary.unchanged, deleted: ref.summary.deleted });
    }

    // Sidecars of a run against another base are not re-used.
    await runPack(l, 'other-base', opts);
    const other = await runPack(l, 'other-base', { ...opts, base: new Map(), resume: true });
    expect(other.summary.resumed).toEqual({ restartedBecause: expect.stringMatching(/another profile or limits/) });
    // The base manifest's digest, when given, stands for the base: the same one keeps the outputs, another does not.
    await runPack(l, 'digest', { ...opts, baseDigest: 'a'.repeat(64) });
    const same = await runPack(l, 'digest', { ...opts, baseDigest: 'a'.repeat(64), resume: true });
    expect(same.summary.resumed).toMatchObject({ kept: expect.any(Number) });
    const changed = await runPack(l, 'digest', { ...opts, baseDigest: 'b'.repeat(64), resume: true });
    expect(changed.summary.resumed).toEqual({ restartedBecause: expect.stringMatching(/another profile or limits/) });
  });

  it('when the tree changes between attempts, the manifest stays consistent with what the restore holds', async () => {
    const l = await layout('resume-changed');
    await makeTree(l);
    const full = await runPack(l, 'full', { limits: RL, time: 10 });
    await change(l);
    const base = (await readManifest(full.manifestPath)).entries;
    const opts: Partial<PackOptions> = { limits: RL, base, baseTime: 10, time: 20 };

    // Killed after two slices: c/00…c/02 are behind it.
    let killed = false;
    await expect(
      runPack(l, 'inc', {
        ...opts,
        onProgress: (p) => {
          if (!killed && p.phase === 'pack' && p.durable >= 2) {
            killed = true;
            throw new Killed();
          }
        },
      }),
    ).rejects.toBeInstanceOf(Killed);
    const done0 = JSON.parse(await fsp.readFile(path.join(l.packs, 'inc', 'part.1.tar.done.json'), 'utf8')) as { handed: { entries: ManifestEntry[] } };
    const after = done0.handed.entries.at(-1)!.path;
    expect(after > 'c/01-same.txt').toBe(true);

    // Meanwhile: a file passed over as unchanged changes, one that was packed is deleted, a new one appears — all behind the kill point.
    await write(l.src, 'c/01-same.txt', 'changed between attempts', 0o644, T('2024-01-01T00:00:00Z'));
    await fsp.rm(path.join(l.src, 'c/00-chg.txt'));
    await write(l.src, 'c/00a-new.txt', 'appeared between attempts');
    expect('c/00a-new.txt' < after).toBe(true);

    const inc = await runPack(l, 'inc', { ...opts, resume: true });
    expect(inc.summary.resumed).toMatchObject({ kept: 2 });
    const m = (await readManifest(inc.manifestPath)).entries;
    expect(m.get('c/01-same.txt')).toEqual(base.get('c/01-same.txt')); // the restore keeps the base's version
    expect(m.get('c/00-chg.txt')?.sha256).toBe(createHash('sha256').update('v2 00 longer').digest('hex')); // packed before it went
    expect(m.has('c/00a-new.txt')).toBe(false); // in no output
    expect(inc.index.incremental!.deleted).toEqual([]);

    // Restoring the chain gives exactly what the manifest says…
    await restore(l, full.out, 'apply');
    await restore(l, inc.out, 'merge');
    await expectTreeIs(l.dataDir, [...m.values()]);

    // …and the next increment against it catches up with the tree.
    const next = await runPack(l, 'next', { limits: RL, base: m, baseTime: 20, time: 30 });
    expect(await packedFiles(next.out, next.index)).toEqual(['c/00a-new.txt', 'c/01-same.txt']);
    expect(next.index.incremental!.deleted).toEqual([{ path: 'c/00-chg.txt', kind: 'file' }]);
    await restore(l, next.out, 'merge');
    await expectTreeIs(l.dataDir, await treeManifest(l.src));
  });
});
