import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tar, { type Header } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { applyRestore, RestoreRejected, unsafePathReason, type ApplyRestoreOptions } from '../../engine/unpack/index.js';
import { packBundle } from '../../engine/pack/index.js';
import { readManageIndex } from '../../engine/formats/manageIndex.js';
import { ErrorCode } from '../../common/errors.js';
import { removeTree } from '../../engine/fsx.js';
import type { IndexEntry, ManageIndex } from '../../common/manageIndex.js';

const MiB = 1024 * 1024;
const LIMITS = { bigFileBytes: 1 * MiB, sliceBytes: 16 * 1024, sliceEntries: 5 };
let root: string;

// ---- helpers ---------------------------------------------------------------------

async function sha256File(p: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const c of (await fsp.open(p)).createReadStream() as AsyncIterable<Buffer>) hash.update(c);
  return hash.digest('hex');
}

interface Node {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  size: number;
  sha256: string;
  mtimeMs: number;
  target: string;
}

/** Every item below `dir` (not `dir` itself), by relative path; `exclude` are absolute paths skipped with their contents. */
async function snapshot(dir: string, exclude: string[] = []): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  async function walk(abs: string, rel: string): Promise<void> {
    for (const name of (await fsp.readdir(abs)).sort()) {
      const a = path.join(abs, name);
      if (exclude.includes(a)) continue;
      const r = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(a);
      const base = { mode: st.mode & 0o7777, size: 0, sha256: '', mtimeMs: st.mtimeMs, target: '' };
      if (st.isDirectory()) {
        out.set(r, { ...base, type: 'dir', mtimeMs: st.mtimeMs });
        await walk(a, r);
      } else if (st.isFile()) {
        out.set(r, { ...base, type: 'file', size: st.size, sha256: await sha256File(a) });
      } else if (st.isSymbolicLink()) {
        out.set(r, { ...base, type: 'symlink', target: await fsp.readlink(a) });
      } else {
        out.set(r, { ...base, type: 'other' });
      }
    }
  }
  await walk(dir, '');
  return out;
}

/** Same items, bytes, modes; mtimes within 1 ms. */
function expectSameTree(got: Map<string, Node>, want: Map<string, Node>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [rel, w] of want) {
    const g = got.get(rel)!;
    expect({ rel, type: g.type, mode: g.mode, size: g.size, sha256: g.sha256 }).toEqual({
      rel,
      type: w.type,
      mode: w.mode,
      size: w.size,
      sha256: w.sha256,
    });
    expect(Math.abs(g.mtimeMs - w.mtimeMs), `${rel} mtime`).toBeLessThan(1);
  }
}

/** Exactly as before, mtimes included (for "untouched"). Folder mtimes of listed parents are left out by the caller. */
function listing(m: Map<string, Node>, withDirMtimes = true): string[] {
  return [...m.entries()].map(([rel, n]) =>
    [rel, n.type, n.mode.toString(8), n.size, n.sha256, n.target, n.type === 'dir' && !withDirMtimes ? '' : n.mtimeMs].join(' '),
  );
}

/**
 * As `listing`, but mtimes within 10 µs are equal: utimes takes a double of
 * seconds (libuv turns it into a timespec), so a time set back from a Stats'
 * mtimeMs can move by a microsecond or so.
 */
function expectSameListing(got: Map<string, Node>, want: Map<string, Node>): void {
  const strip = (m: Map<string, Node>) => listing(new Map([...m].map(([k, n]) => [k, { ...n, mtimeMs: 0 }])));
  expect(strip(got)).toEqual(strip(want));
  for (const [rel, w] of want) expect(Math.abs(got.get(rel)!.mtimeMs - w.mtimeMs), `${rel} mtime`).toBeLessThan(0.01);
}

async function exists(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => true,
    () => false,
  );
}

interface Layout {
  base: string;
  src: string;
  dataDir: string;
  restoreDir: string;
  stagingDir: string;
  outside: string;
}

async function layout(name: string): Promise<Layout> {
  const base = await fsp.mkdtemp(path.join(root, `${name}-`));
  const bundle = path.join(base, 'bundle');
  const l: Layout = {
    base,
    src: path.join(base, 'src'),
    dataDir: path.join(bundle, 'data'),
    restoreDir: path.join(bundle, 'backup', 'restore', 'in'),
    stagingDir: path.join(bundle, 'backup', 'restore', 'staging'),
    outside: path.join(base, 'outside'),
  };
  await fsp.mkdir(l.restoreDir, { recursive: true });
  await fsp.mkdir(l.outside, { recursive: true });
  await fsp.writeFile(path.join(l.outside, 'secret'), 'do not touch');
  return l;
}

function opts(l: Layout, extra: Partial<ApplyRestoreOptions> = {}): ApplyRestoreOptions {
  return { bundleName: 'com.example.app', restoreDir: l.restoreDir, dataDir: l.dataDir, stagingDir: l.stagingDir, mode: 'apply', ...extra };
}

const T = (iso: string) => new Date(iso).getTime() / 1000;

/** A tree with nested and empty folders, several modes, fixed mtimes, a 3 MiB file and unicode names. */
async function buildSourceTree(src: string): Promise<void> {
  const files: Array<[string, Buffer | string, number]> = [
    ['docs/a.txt', 'alpha\n', 0o600],
    ['docs/b.txt', 'bravo\n', 0o644],
    ['bin/run.sh', '#!/bin/sh\necho hi\n', 0o755],
    ['deep/x/y/z/leaf.bin', randomBytes(5000), 0o644],
    ['ünïcødé/文件 ☃.txt', 'snow', 0o600],
    ['big/huge.bin', randomBytes(3 * MiB), 0o640],
    ['zero.bin', '', 0o644],
    ['ro/inside.txt', 'read-only folder', 0o444],
  ];
  for (let i = 0; i < 14; i++) files.push([`many/f${String(i).padStart(2, '0')}.bin`, randomBytes(900 + i * 211), i % 2 ? 0o600 : 0o644]);
  for (const [rel, content, mode] of files) {
    const p = path.join(src, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, content);
    await fsp.chmod(p, mode);
    await fsp.utimes(p, T('2021-03-04T05:06:07.891Z'), T('2021-03-04T05:06:07.891Z') + (rel.length % 7) * 0.001);
  }
  await fsp.mkdir(path.join(src, 'empty'), { recursive: true });
  await fsp.mkdir(path.join(src, 'deep/empty2'), { recursive: true });
  await fsp.mkdir(path.join(src, 'ünïcødé/空'), { recursive: true });
  const dirModes: Record<string, number> = { bin: 0o750, docs: 0o700, empty: 0o755, ro: 0o555, 'deep/empty2': 0o711 };
  // Folders deepest first, so setting children does not move their parents' mtimes.
  const dirs = [...(await snapshot(src)).entries()].filter(([, n]) => n.type === 'dir').map(([rel]) => rel);
  dirs.sort((a, b) => b.split('/').length - a.split('/').length);
  for (const rel of dirs) {
    const p = path.join(src, rel);
    await fsp.chmod(p, dirModes[rel] ?? 0o755);
    const t = T('2020-01-02T03:04:05.678Z') + rel.length * 0.001;
    await fsp.utimes(p, t, t);
  }
}

async function pack(l: Layout, dataDir = l.src): Promise<ManageIndex> {
  const summary = await packBundle({ bundleName: 'com.example.source', dataDir, outDir: l.restoreDir, profile: { excludes: [] }, limits: LIMITS });
  return readManageIndex(summary.indexPath);
}

async function expectRejected(p: Promise<unknown>, code: number, message?: RegExp): Promise<RestoreRejected> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RestoreRejected);
  const r = err as RestoreRejected;
  expect(r.code).toBe(code);
  if (message) expect(r.message).toMatch(message);
  return r;
}

async function flipByte(p: string, offset: number): Promise<void> {
  const fh = await fsp.open(p, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

async function oldSiblings(dataDir: string): Promise<string[]> {
  return (await fsp.readdir(path.dirname(dataDir))).filter((n) => n.startsWith(`${path.basename(dataDir)}.old-`));
}

async function seedOldData(dataDir: string): Promise<void> {
  await fsp.mkdir(path.join(dataDir, 'old/sub'), { recursive: true });
  await fsp.writeFile(path.join(dataDir, 'old/sub/previous.txt'), 'previous data');
  await fsp.writeFile(path.join(dataDir, 'keep-me.txt'), 'was here');
  await fsp.mkdir(path.join(dataDir, 'docs'));
  await fsp.writeFile(path.join(dataDir, 'docs/a.txt'), 'stale a');
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'applyRestore-'));
});

afterAll(async () => {
  // Restored trees hold read-only folders: make everything removable first.
  const fix = async (p: string): Promise<void> => {
    const st = await fsp.lstat(p);
    if (!st.isDirectory()) return;
    await fsp.chmod(p, 0o700);
    for (const n of await fsp.readdir(p)) await fix(path.join(p, n));
  };
  await fix(root);
  await fsp.rm(root, { recursive: true, force: true });
});

// ---- tests --------------------------------------------------------------------------

describe('applyRestore: round trip', () => {
  it('restores an identical tree: bytes, modes, mtimes, empty folders, unicode names', async () => {
    const l = await layout('roundtrip');
    await buildSourceTree(l.src);
    const index = await pack(l);
    expect(index.files.filter((f) => f.kind === 'tar').length).toBeGreaterThan(2);
    expect(index.files.filter((f) => f.kind === 'file').map((f) => f.entries[0]!.path)).toEqual(['big/huge.bin']);
    const want = await snapshot(l.src);

    const reports: Array<{ files: number; bytes: number }> = [];
    const result = await applyRestore(opts(l, { onProgress: (p) => reports.push(p) }));

    const all = index.files.flatMap((f) => f.entries);
    const files = all.filter((e) => e.kind === 'file');
    expect(result).toEqual({
      files: files.length,
      dirs: all.length - files.length,
      bytes: files.reduce((n, e) => n + e.size, 0),
      appliedTo: l.dataDir,
    });
    expectSameTree(await snapshot(l.dataDir), want);
    expect((await fsp.stat(l.dataDir)).mode & 0o777).toBe(0o700);
    for (const rel of ['empty', 'deep/empty2', 'ünïcødé/空']) expect(want.get(rel)?.type).toBe('dir');
    expect(reports.at(-1)).toEqual({ files: result.files, bytes: result.bytes });
    expect(await exists(l.stagingDir)).toBe(false);
    expect(await oldSiblings(l.dataDir)).toEqual([]);
  });

  it('apply over an existing dataDir replaces it; tempOnly leaves dataDir untouched', async () => {
    const l = await layout('replace');
    await buildSourceTree(l.src);
    await pack(l);
    const want = await snapshot(l.src);

    // tempOnly first: dataDir exactly as before, the verified tree in stagingDir.
    await seedOldData(l.dataDir);
    const before = listing(await snapshot(l.dataDir));
    const temp = await applyRestore(opts(l, { mode: 'tempOnly' }));
    expect(temp.appliedTo).toBe(l.stagingDir);
    expect(listing(await snapshot(l.dataDir))).toEqual(before);
    expectSameTree(await snapshot(l.stagingDir), want);
    expect((await fsp.stat(l.stagingDir)).mode & 0o777).toBe(0o700);

    // The big file went into the staging tree; a later apply reclaims it from there (a retried attempt).
    expect(await exists(path.join(l.restoreDir, 'file.0'))).toBe(false);
    const applied = await applyRestore(opts(l));
    expect(applied.appliedTo).toBe(l.dataDir);
    expectSameTree(await snapshot(l.dataDir), want); // old files gone
    expect(await exists(path.join(l.dataDir, 'keep-me.txt'))).toBe(false);
    expect(await exists(l.stagingDir)).toBe(false);
    expect(await oldSiblings(l.dataDir)).toEqual([]);

    // Restoring over a tree holding read-only folders works too (the old one is removed).
    await fsp.chmod(path.join(l.dataDir, 'ro'), 0o500);
    const l2 = { ...l, restoreDir: path.join(l.base, 'bundle/backup/restore/in2') };
    await fsp.mkdir(path.join(l.base, 'src2/only'), { recursive: true });
    await fsp.writeFile(path.join(l.base, 'src2/only/new.txt'), 'new');
    await pack(l2, path.join(l.base, 'src2'));
    await applyRestore(opts(l2));
    expectSameTree(await snapshot(l.dataDir), await snapshot(path.join(l.base, 'src2')));
    expect(await oldSiblings(l.dataDir)).toEqual([]);
  });

  it("byIndex (the activity's mode) applies a full set, or leaves it in tempOnlyStagingDir; a retry after either finds its result", async () => {
    const appliedRecord = (l: Layout) => path.join(l.base, 'applied.json');
    // fullBackupOnly: the verified tree stays in the temp area, dataDir as it was.
    const l = await layout('by-index-temp');
    await buildSourceTree(l.src);
    await pack(l);
    const want = await snapshot(l.src);
    await seedOldData(l.dataDir);
    const before = listing(await snapshot(l.dataDir));
    const tempDir = path.join(l.base, 'bundle', 'backup', 'restore-temp', 'restored-s1');
    const asTemp = opts(l, { mode: 'byIndex', tempOnlyStagingDir: tempDir, appliedRecord: appliedRecord(l) });
    const temp = await applyRestore(asTemp);
    expect(temp.appliedTo).toBe(tempDir);
    expect(listing(await snapshot(l.dataDir))).toEqual(before);
    expectSameTree(await snapshot(tempDir), want);
    expect(await exists(l.stagingDir)).toBe(false);
    expect(await applyRestore(asTemp)).toEqual(temp);

    // Otherwise a full set replaces dataDir.
    const l2 = await layout('by-index-apply');
    await buildSourceTree(l2.src);
    await pack(l2);
    await seedOldData(l2.dataDir);
    const asApply = opts(l2, { mode: 'byIndex', appliedRecord: appliedRecord(l2) });
    const applied = await applyRestore(asApply);
    expect(applied.appliedTo).toBe(l2.dataDir);
    expectSameTree(await snapshot(l2.dataDir), await snapshot(l2.src));
    expect(await applyRestore(asApply)).toEqual(applied);
  });

  it('accepts an index whose bundleName differs (app mapping)', async () => {
    const l = await layout('mapping');
    await fsp.mkdir(l.src);
    await fsp.writeFile(path.join(l.src, 'f.txt'), 'x');
    const index = await pack(l);
    expect(index.bundleName).not.toBe('com.example.target');
    await applyRestore(opts(l, { bundleName: 'com.example.target' }));
    expect(await fsp.readFile(path.join(l.dataDir, 'f.txt'), 'utf8')).toBe('x');
  });

  it('falls back to copying a big file when rename crosses file systems (EXDEV)', async () => {
    const l = await layout('exdev');
    await buildSourceTree(l.src);
    await pack(l);
    const original = fsp.rename.bind(fsp);
    const spy = vi.spyOn(fsp, 'rename').mockImplementation(async (from, to) => {
      if (path.basename(String(from)).startsWith('file.')) {
        throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV', syscall: 'rename' });
      }
      return original(from, to);
    });
    try {
      await applyRestore(opts(l));
    } finally {
      spy.mockRestore();
    }
    expectSameTree(await snapshot(l.dataDir), await snapshot(l.src));
    expect(await exists(path.join(l.restoreDir, 'file.0'))).toBe(true);
  });
});

describe('applyRestore: tampering', () => {
  async function tamperCase(name: string, tamper: (l: Layout, index: ManageIndex) => Promise<void>, message?: RegExp) {
    const l = await layout(name);
    await buildSourceTree(l.src);
    const index = await pack(l);
    await seedOldData(l.dataDir);
    const before = listing(await snapshot(l.dataDir));
    const parentBefore = listing(await snapshot(path.dirname(l.dataDir), [l.dataDir, path.join(path.dirname(l.dataDir), 'backup')]));
    await tamper(l, index);
    const restoreBefore = await snapshot(l.restoreDir);
    await expectRejected(applyRestore(opts(l)), ErrorCode.UNTAR_FAILED, message);
    expect(listing(await snapshot(l.dataDir))).toEqual(before);
    expect(listing(await snapshot(path.dirname(l.dataDir), [l.dataDir, path.join(path.dirname(l.dataDir), 'backup')]))).toEqual(parentBefore);
    expect(await exists(l.stagingDir)).toBe(false);
    // The restore files are left as they were (a moved big file is put back).
    expectSameListing(await snapshot(l.restoreDir), restoreBefore);
  }

  it('rejects a slice with a flipped content byte', async () => {
    await tamperCase('flip-slice', async (l, index) => {
      const last = index.files.filter((f) => f.kind === 'tar').at(-1)!;
      await flipByte(path.join(l.restoreDir, last.uri), Math.floor(last.size / 2));
    });
  });

  it('rejects a slice with a flipped header byte', async () => {
    await tamperCase('flip-header', async (l, index) => {
      await flipByte(path.join(l.restoreDir, index.files[0]!.uri), 10);
    });
  });

  it('rejects a tampered big file (before moving it)', async () => {
    await tamperCase(
      'flip-big',
      async (l) => {
        await flipByte(path.join(l.restoreDir, 'file.0'), 1234567);
      },
      /^file\.0: SHA-256 does not match the index \(tampered or incomplete\)$/,
    );
  });

  it('rejects a truncated handed file, a missing one, and a symlink in its place', async () => {
    await tamperCase(
      'truncated',
      async (l, index) => {
        const last = index.files.filter((f) => f.kind === 'tar').at(-1)!;
        await fsp.truncate(path.join(l.restoreDir, last.uri), last.size - 512);
      },
      /tampered or incomplete/,
    );
    await tamperCase(
      'missing',
      async (l) => {
        await fsp.rm(path.join(l.restoreDir, 'file.0'));
      },
      /file\.0: missing/,
    );
    await tamperCase(
      'symlinked',
      async (l) => {
        const p = path.join(l.restoreDir, 'file.0');
        await fsp.rename(p, path.join(l.outside, 'real'));
        await fsp.symlink(path.join(l.outside, 'real'), p);
      },
      /symlink/,
    );
  });

  it('rejects a slice whose later content fails after a big file was moved, and moves it back', async () => {
    await tamperCase('late-fail', async (l, index) => {
      const bigPos = index.files.findIndex((f) => f.kind === 'file');
      const later = index.files
        .slice(bigPos + 1)
        .filter((f) => f.kind === 'tar')
        .at(-1);
      expect(later).toBeDefined();
      await flipByte(path.join(l.restoreDir, later!.uri), Math.floor(later!.size / 2));
    });
  });
});

// ---- crafted archives -------------------------------------------------------------

interface CraftEntry {
  header: Partial<Header> & { name: string };
  content?: Buffer | string;
}

async function writeTar(p: string, entries: CraftEntry[]): Promise<void> {
  const pk = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pk as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const content = e.content === undefined ? undefined : Buffer.from(e.content);
      const header = { ...e.header, size: content?.length ?? 0 };
      if (content) pk.entry(header, content, (err) => (err ? reject(err) : resolve()));
      else pk.entry(header, (err) => (err ? reject(err) : resolve())).end(undefined);
    });
  }
  pk.finalize();
  await done;
  await fsp.writeFile(p, Buffer.concat(chunks));
}

function sha(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Index entries exactly as the tar holds them, unless overridden. */
function entriesOf(entries: CraftEntry[]): IndexEntry[] {
  return entries.map((e) => {
    const dir = e.header.type === 'directory';
    const c = Buffer.from(e.content ?? '');
    return {
      path: e.header.name.replace(/\/$/, ''),
      kind: dir ? 'dir' : 'file',
      size: dir ? 0 : c.length,
      mode: 0o644,
      mtimeMs: 1.6e12,
      sha256: dir ? '' : sha(c),
    };
  });
}

async function craft(l: Layout, entries: CraftEntry[], indexEntries: IndexEntry[] = entriesOf(entries)): Promise<void> {
  const tarPath = path.join(l.restoreDir, 'part.0.tar');
  await writeTar(tarPath, entries);
  const data = await fsp.readFile(tarPath);
  const index: ManageIndex = {
    version: 1,
    bundleName: 'com.example.app',
    createdAt: new Date().toISOString(),
    files: [{ uri: 'part.0.tar', kind: 'tar', size: data.length, sha256: sha(data), entries: indexEntries }],
    skipped: [],
    totals: { files: 0, dirs: 0, bytes: 0 },
  };
  await fsp.writeFile(path.join(l.restoreDir, 'manage.json'), JSON.stringify(index));
}

describe('applyRestore: crafted archives', () => {
  const file = (name: string, content = 'evil'): CraftEntry => ({ header: { name, type: 'file', mode: 0o644 }, content });
  const benign = (name: string): IndexEntry[] => [{ path: name, kind: 'file', size: 4, mode: 0o644, mtimeMs: 1.6e12, sha256: sha('evil') }];

  async function craftedCase(name: string, build: (l: Layout) => Promise<void>, message?: RegExp): Promise<void> {
    const l = await layout(name);
    await seedOldData(l.dataDir);
    await build(l);
    // Everything under the test's root, except the staging and restore folders; folders' mtimes
    // are left out only for the staging folder's parents (creating/removing it touches them).
    const exclude = [l.stagingDir, l.restoreDir];
    const stagingParents = new Set<string>();
    for (let p = path.dirname(l.stagingDir); p.startsWith(l.base); p = path.dirname(p)) stagingParents.add(p);
    const list = async () =>
      listing(await snapshot(l.base, exclude)).map((s) => {
        const rel = s.split(' ')[0]!;
        return stagingParents.has(path.join(l.base, rel)) ? s.replace(/ [\d.]+$/, ' -') : s;
      });
    const before = await list();
    await expectRejected(applyRestore(opts(l)), ErrorCode.UNTAR_FAILED, message);
    expect(await list()).toEqual(before);
    expect(await exists(l.stagingDir)).toBe(false);
    for (const p of ['evil', 'abs-evil']) {
      for (const d of [l.base, path.dirname(l.stagingDir), path.dirname(path.dirname(l.stagingDir)), l.dataDir, '/']) {
        expect(await exists(path.join(d, p)), path.join(d, p)).toBe(false);
      }
    }
    expect(await fsp.readFile(path.join(l.outside, 'secret'), 'utf8')).toBe('do not touch');
  }

  const unsafeNames = ['../evil', 'a/../../evil', './../evil', 'a/./../../evil', 'a/b/../../../evil', '../../../../evil', 'a//evil', './evil', 'a/./evil'];
  for (const name of unsafeNames) {
    it(`rejects a tar entry named "${name}"`, async () => {
      await craftedCase(`name-${unsafeNames.indexOf(name)}`, (l) => craft(l, [file(name)], benign('evil')), /refused/);
    });
  }

  it('rejects an absolute entry name', async () => {
    await craftedCase('abs', async (l) => craft(l, [file(path.join(l.base, 'abs-evil'))], benign('abs-evil')), /absolute/);
    await craftedCase('abs2', async (l) => craft(l, [file('/abs/evil')], benign('abs/evil')), /absolute/);
  });

  it('rejects a symlink entry (and so never writes a file through it)', async () => {
    await craftedCase(
      'symlink',
      async (l) =>
        craft(
          l,
          [{ header: { name: 'link', type: 'symlink', linkname: l.outside } }, file('link/evil')],
          [{ path: 'link', kind: 'dir', size: 0, mode: 0o755, mtimeMs: 1.6e12, sha256: '' }, ...benign('link/evil')],
        ),
      /type symlink/,
    );
  });

  it('rejects a hard link entry', async () => {
    await craftedCase(
      'hardlink',
      async (l) => craft(l, [{ header: { name: 'hl', type: 'link', linkname: path.join(l.outside, 'secret') } }, file('hl', 'pwned')], benign('hl')),
      /type link/,
    );
  });

  it('rejects a character device entry', async () => {
    await craftedCase(
      'chardev',
      async (l) => craft(l, [{ header: { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 } }], benign('dev')),
      /type character-device/,
    );
  });

  it('rejects a block device and a fifo entry', async () => {
    await craftedCase(
      'blockdev',
      async (l) => craft(l, [{ header: { name: 'blk', type: 'block-device', devmajor: 7, devminor: 0 } }], benign('blk')),
      /type block-device/,
    );
    await craftedCase('fifo', async (l) => craft(l, [{ header: { name: 'fifo', type: 'fifo' } }], benign('fifo')), /type fifo/);
  });

  it('rejects an entry that is not in the index', async () => {
    await craftedCase('unlisted', async (l) => craft(l, [file('a.txt'), file('b.txt')], benign('a.txt')), /"b\.txt" is not the next one in the index/);
  });

  it('rejects entries out of index order, of the wrong kind or size, and a slice missing listed entries', async () => {
    await craftedCase('order', async (l) => craft(l, [file('a.txt'), file('b.txt')], [...benign('b.txt'), ...benign('a.txt')]), /not the next/);
    await craftedCase('kind', async (l) => craft(l, [{ header: { name: 'a', type: 'directory' } }], benign('a')), /kind or size/);
    await craftedCase('short', async (l) => craft(l, [file('a.txt')], [...benign('a.txt'), ...benign('b.txt')]), /ends before/);
    await craftedCase('content', async (l) => craft(l, [file('a.txt', 'EVIL')], benign('a.txt')), /SHA-256 does not match/);
  });

  it('rejects an index entry path with ".." (and a big file whose index path escapes)', async () => {
    await craftedCase('index-dotdot', async (l) => craft(l, [file('../evil')]), /index entry "\.\.\/evil" refused/);
    await craftedCase(
      'index-big',
      async (l) => {
        const content = randomBytes(1000);
        await fsp.writeFile(path.join(l.restoreDir, 'file.0'), content);
        const entry: IndexEntry = { path: 'a/../../evil', kind: 'file', size: content.length, mode: 0o644, mtimeMs: 1.6e12, sha256: sha(content) };
        const index: ManageIndex = {
          version: 1,
          bundleName: 'x',
          createdAt: new Date().toISOString(),
          files: [{ uri: 'file.0', kind: 'file', size: content.length, sha256: sha(content), entries: [entry] }],
          skipped: [],
          totals: { files: 1, dirs: 0, bytes: content.length },
        };
        await fsp.writeFile(path.join(l.restoreDir, 'manage.json'), JSON.stringify(index));
      },
      /refused/,
    );
  });

  it('rejects duplicate paths and a path below a file', async () => {
    await craftedCase('dup', async (l) => craft(l, [file('a'), file('a')]), /listed twice/);
    await craftedCase('below', async (l) => craft(l, [file('a'), file('a/b')]), /below the file/);
  });
});

describe('unsafePathReason', () => {
  it('accepts plain relative paths (backslashes are ordinary characters) and refuses the rest', () => {
    const r = '/stage';
    for (const ok of ['a', 'a/b.txt', 'ünï/文件 ☃', 'a\\..\\b', '..a/b..', '.hidden/x']) expect(unsafePathReason(ok, r), ok).toBeUndefined();
    for (const bad of ['', '.', '..', '/a', 'a/', 'a//b', 'a/./b', './a', 'a/..', '../a', 'a/../../b', 'a\0b', '/stage/a']) {
      expect(unsafePathReason(bad, r), JSON.stringify(bad)).toBeDefined();
    }
  });
});

describe('applyRestore: invalid index', () => {
  it('rejects invalid JSON, a wrong shape and a missing index with 13900020', async () => {
    const l = await layout('invalid');
    await seedOldData(l.dataDir);
    const before = listing(await snapshot(l.dataDir));
    const indexPath = path.join(l.restoreDir, 'manage.json');

    await expectRejected(applyRestore(opts(l)), ErrorCode.INVALID_ARGUMENT, /manage\.json is missing/);
    await fsp.writeFile(indexPath, '{"version": 1, ');
    await expectRejected(applyRestore(opts(l)), ErrorCode.INVALID_ARGUMENT, /not valid JSON/);
    await fsp.writeFile(indexPath, JSON.stringify({ version: 2, bundleName: 'x', files: [] }));
    await expectRejected(applyRestore(opts(l)), ErrorCode.INVALID_ARGUMENT, /not a valid index/);
    const good = { version: 1, bundleName: 'x', createdAt: '', skipped: [], totals: { files: 0, dirs: 0, bytes: 0 } };
    await fsp.writeFile(indexPath, JSON.stringify({ ...good, files: [{ uri: '../x', kind: 'tar', size: 0, sha256: '', entries: [] }] }));
    await expectRejected(applyRestore(opts(l)), ErrorCode.INVALID_ARGUMENT, /not a valid index/);
    await fsp.writeFile(indexPath, JSON.stringify({ ...good, files: [{ uri: '..', kind: 'tar', size: 0, sha256: sha(''), entries: [] }] }));
    await expectRejected(applyRestore(opts(l)), ErrorCode.INVALID_ARGUMENT, /reserved/);
    await fsp.rm(indexPath);
    await fsp.symlink(path.join(l.outside, 'secret'), indexPath);
    await expectRejected(applyRestore(opts(l)), ErrorCode.INVALID_ARGUMENT, /symlink/);

    expect(listing(await snapshot(l.dataDir))).toEqual(before);
    expect(await exists(l.stagingDir)).toBe(false);
  });
});

describe('applyRestore: abort and recovery', () => {
  it('aborted mid-way: throws the reason, cleans the staging folder, leaves dataDir and the restore files', async () => {
    const l = await layout('abort');
    await buildSourceTree(l.src);
    const index = await pack(l);
    await seedOldData(l.dataDir);
    const dataBefore = listing(await snapshot(l.dataDir));
    const restoreBefore = await snapshot(l.restoreDir);
    const total = index.files.flatMap((f) => f.entries).filter((e) => e.kind === 'file').length;

    // Early: at the first report.
    const early = new AbortController();
    const reason1 = new Error('stop now');
    await expect(applyRestore(opts(l, { signal: early.signal, onProgress: () => early.abort(reason1) }))).rejects.toBe(reason1);
    expect(await exists(l.stagingDir)).toBe(false);
    expect(listing(await snapshot(l.dataDir))).toEqual(dataBefore);
    expectSameListing(await snapshot(l.restoreDir), restoreBefore);

    // Late: every file placed (the big one moved into the staging tree), folders not yet finished.
    const late = new AbortController();
    const reason2 = new Error('stop late');
    await expect(applyRestore(opts(l, { signal: late.signal, onProgress: (p) => p.files === total && late.abort(reason2) }))).rejects.toBe(reason2);
    expect(await exists(l.stagingDir)).toBe(false);
    expect(listing(await snapshot(l.dataDir))).toEqual(dataBefore);
    expectSameListing(await snapshot(l.restoreDir), restoreBefore);

    // And the restore still works afterwards.
    await applyRestore(opts(l));
    expectSameTree(await snapshot(l.dataDir), await snapshot(l.src));
  });

  it('recovers a swap interrupted between the two renames, and removes leftovers of a finished one', async () => {
    const l = await layout('recover');
    await fsp.mkdir(l.src);
    await fsp.writeFile(path.join(l.src, 'new.txt'), 'new');
    await pack(l);

    // Died after rename(dataDir → old): dataDir missing, the old tree beside it.
    const old = `${l.dataDir}.old-0123456789abcdef`;
    await seedOldData(old);
    const before = listing(await snapshot(old));
    await applyRestore(opts(l, { mode: 'tempOnly' }));
    expect(listing(await snapshot(l.dataDir))).toEqual(before);
    expect(await oldSiblings(l.dataDir)).toEqual([]);

    // A finished swap whose clean-up did not run: the leftover goes.
    await seedOldData(old);
    await applyRestore(opts(l, { mode: 'tempOnly' }));
    expect(listing(await snapshot(l.dataDir))).toEqual(before);
    expect(await oldSiblings(l.dataDir)).toEqual([]);
  });

  it('a retry after the swap (its big file moved out of the restore files) answers the noted result; without a swap it redoes', async () => {
    const l = await layout('retried');
    await buildSourceTree(l.src);
    await pack(l);
    await seedOldData(l.dataDir);
    const appliedRecord = path.join(l.base, 'applied.json');
    const keepPreviousAs = `${l.dataDir}.before`;
    const first = await applyRestore(opts(l, { appliedRecord, keepPreviousAs }));
    const restored = listing(await snapshot(l.dataDir));
    const kept = listing(await snapshot(keepPreviousAs));
    // Died after the swap, before the kept tree got its name: the next attempt finishes that, applies nothing.
    await fsp.rename(keepPreviousAs, `${l.dataDir}.old-0123456789abcdef`);
    expect(await applyRestore(opts(l, { appliedRecord, keepPreviousAs }))).toEqual(first);
    expect(listing(await snapshot(l.dataDir))).toEqual(restored);
    expect(listing(await snapshot(keepPreviousAs))).toEqual(kept);
    expect(await oldSiblings(l.dataDir)).toEqual([]);
    // A record whose tree is not the one in place (the swap did not happen or was lost): dropped, the apply is redone.
    await fsp.rm(l.dataDir, { recursive: true, force: true });
    await expectRejected(applyRestore(opts(l, { appliedRecord })), ErrorCode.UNTAR_FAILED, /missing from the restore files/);
    expect(await exists(appliedRecord)).toBe(false);
  });

  it('drops the slices once the tree is built; a retry that finds them dropped resumes from the verified tree, or fails as incomplete', async () => {
    const l = await layout('dropped');
    await buildSourceTree(l.src);
    await seedOldData(l.dataDir);
    let dataBefore = listing(await snapshot(l.dataDir));
    const appliedRecord = path.join(l.base, 'applied.json');
    /** An attempt that dies once its slices are dropped (a signal that fires then: after the syncfs, before the swap). */
    const dieAfterDrop = async () => {
      await removeTree(l.stagingDir); // a tree of an earlier case; its folders are stamped (one is 0555)
      await fsp.rm(l.restoreDir, { recursive: true, force: true });
      await fsp.mkdir(l.restoreDir, { recursive: true });
      const index = await pack(l);
      const slices = index.files.filter((h) => h.kind === 'tar').map((h) => path.join(l.restoreDir, h.uri));
      expect(slices.length).toBeGreaterThan(1);
      const reason = new Error('died');
      const gone = () => slices.every((p) => !existsSync(p));
      const signal = {
        get aborted() {
          return gone();
        },
        reason,
        throwIfAborted: () => {
          if (gone()) throw reason;
        },
      } as unknown as AbortSignal;
      await expect(applyRestore(opts(l, { appliedRecord, signal }))).rejects.toBe(reason);
      expect(listing(await snapshot(l.dataDir))).toEqual(dataBefore);
      return snapshot(l.stagingDir);
    };

    // Intact: verified, synced and swapped in, without a slice.
    expectSameTree(await dieAfterDrop(), await snapshot(l.src));
    const result = await applyRestore(opts(l, { appliedRecord }));
    expect(result.appliedTo).toBe(path.resolve(l.dataDir));
    expectSameTree(await snapshot(l.dataDir), await snapshot(l.src));
    expect(await exists(l.stagingDir)).toBe(false);
    await fsp.rm(l.dataDir, { recursive: true, force: true });
    await seedOldData(l.dataDir);
    dataBefore = listing(await snapshot(l.dataDir));
    await fsp.rm(appliedRecord, { force: true });

    // A tree that lost a file's bytes (a power cut before the syncfs): not swapped in; the slices are gone, so incomplete.
    const staged = await dieAfterDrop();
    const victim = [...staged.entries()].find(([rel, n]) => n.type === 'file' && n.size > 0 && !rel.startsWith('ro/'))![0];
    await flipByte(path.join(l.stagingDir, victim), 0);
    await expectRejected(applyRestore(opts(l, { appliedRecord })), ErrorCode.UNTAR_FAILED, /missing from the restore files/);
    expect(listing(await snapshot(l.dataDir))).toEqual(dataBefore);

    // The same, the tree intact but for one file more than the index's.
    await dieAfterDrop();
    await fsp.writeFile(path.join(l.stagingDir, 'stray.txt'), 'not in the index');
    await expectRejected(applyRestore(opts(l, { appliedRecord })), ErrorCode.UNTAR_FAILED, /missing from the restore files/);
    expect(listing(await snapshot(l.dataDir))).toEqual(dataBefore);
  });

  it('keeps the slices without a record to resume from, and in tempOnly', async () => {
    const l = await layout('kept');
    await buildSourceTree(l.src);
    const index = await pack(l);
    const slices = index.files.filter((f) => f.kind === 'tar').map((h) => path.join(l.restoreDir, h.uri));
    await applyRestore(opts(l));
    for (const p of slices) expect(await exists(p)).toBe(true);
    await fsp.rm(l.restoreDir, { recursive: true, force: true }); // its big file is in the restored tree now
    await fsp.mkdir(l.restoreDir, { recursive: true });
    await pack(l);
    await applyRestore(opts(l, { mode: 'tempOnly', appliedRecord: path.join(l.base, 'applied.json') }));
    for (const p of slices) expect(await exists(p)).toBe(true);
  });

  it('refuses overlapping folders', async () => {
    const l = await layout('overlap');
    await expectRejected(applyRestore(opts(l, { stagingDir: path.join(l.dataDir, 'staging') })), ErrorCode.INVALID_ARGUMENT);
    await expectRejected(applyRestore(opts(l, { stagingDir: l.restoreDir })), ErrorCode.INVALID_ARGUMENT);
  });
});
