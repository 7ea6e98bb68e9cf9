import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LoopYield } from '../../engine/loopYield.js';
import { sortByBytes, walkBundle, walkSteps, type WalkItem, type WalkProfile } from '../../engine/walk.js';

let root: string;
let data: string;
let server: net.Server;

async function write(rel: string, text = rel): Promise<void> {
  const p = path.join(data, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, text);
}

async function walk(profile: WalkProfile, dir = data): Promise<WalkItem[]> {
  const items: WalkItem[] = [];
  for await (const item of walkBundle(dir, profile)) items.push(item);
  return items;
}

function entries(items: WalkItem[]): string[] {
  return items.flatMap((i) => (i.type === 'entry' ? [`${i.kind}:${i.path}`] : []));
}

function skipped(items: WalkItem[]): Array<{ path: string; reason: string }> {
  return items.flatMap((i) => (i.type === 'skipped' ? [{ path: i.path, reason: i.reason }] : []));
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'walkBundle-'));
  data = path.join(root, 'data');
  await write('a.txt', 'hello');
  await write('B.txt');
  await write('b/c.txt');
  await write('b/.hidden');
  await write('cache/x.bin');
  await write('z/deep/file.db');
  await write('é.txt');
  await fsp.mkdir(path.join(data, 'empty'));
  await fsp.chmod(path.join(data, 'a.txt'), 0o640);
  await fsp.symlink('a.txt', path.join(data, 'link'));
  await fsp.symlink('/', path.join(data, 'b', 'rootlink'));
  execFileSync('mkfifo', [path.join(data, 'pipe')]);
  server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(data, 'sock'), resolve));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await fsp.rm(root, { recursive: true, force: true });
});

describe('walkBundle', () => {
  it('yields everything in byte order, folders first, empty folders kept, without includes', async () => {
    const items = await walk({ excludes: [] });
    expect(entries(items)).toEqual([
      'file:B.txt',
      'file:a.txt',
      'dir:b',
      'file:b/.hidden',
      'file:b/c.txt',
      'dir:cache',
      'file:cache/x.bin',
      'dir:empty',
      'dir:z',
      'dir:z/deep',
      'file:z/deep/file.db',
      'file:é.txt',
    ]);
  });

  it('reports symlinks, fifos and sockets as skipped and never follows them', async () => {
    const items = await walk({ excludes: [] });
    expect(skipped(items)).toEqual([
      { path: 'b/rootlink', reason: 'symlink' },
      { path: 'link', reason: 'symlink' },
      { path: 'pipe', reason: 'fifo' },
      { path: 'sock', reason: 'socket' },
    ]);
  });

  it('describes each entry with size, permission bits, mtime and absolute path', async () => {
    const items = await walk({ excludes: [] });
    const a = items.find((i) => i.type === 'entry' && i.path === 'a.txt');
    const st = await fsp.lstat(path.join(data, 'a.txt'));
    expect(a).toEqual({
      type: 'entry',
      path: 'a.txt',
      kind: 'file',
      size: 5,
      mode: 0o640,
      mtimeMs: st.mtimeMs,
      absPath: path.join(data, 'a.txt'),
    });
    const dir = items.find((i) => i.type === 'entry' && i.path === 'b');
    expect(dir).toMatchObject({ kind: 'dir', size: 0 });
  });

  it('an exclude naming a folder excludes everything under it, with or without a trailing slash', async () => {
    for (const pattern of ['cache', 'cache/', './cache']) {
      const paths = entries(await walk({ excludes: [pattern] }));
      expect(paths.filter((p) => p.includes('cache'))).toEqual([]);
      expect(paths).toContain('file:a.txt');
    }
  });

  it('excludes by glob, dotfiles included', async () => {
    const paths = entries(await walk({ excludes: ['**/*.txt', '**/.*'] }));
    expect(paths).toEqual(['dir:b', 'dir:cache', 'file:cache/x.bin', 'dir:empty', 'dir:z', 'dir:z/deep', 'file:z/deep/file.db']);
  });

  it('an excluded symlink or fifo is not reported', async () => {
    const items = await walk({ excludes: ['link', 'pipe', 'sock', 'b'] });
    expect(skipped(items)).toEqual([]);
  });

  it('empty includes yield nothing at all', async () => {
    expect(await walk({ includes: [], excludes: [] })).toEqual([]);
  });

  it('includes naming a folder take all below it', async () => {
    const items = await walk({ includes: ['b'], excludes: ['b/.hidden'] });
    expect(entries(items)).toEqual(['dir:b', 'file:b/c.txt']);
    expect(skipped(items)).toEqual([{ path: 'b/rootlink', reason: 'symlink' }]);
  });

  it('a file glob keeps the folders leading to matches, but not unrelated empty folders', async () => {
    const items = await walk({ includes: ['**/*.db'], excludes: [] });
    expect(entries(items)).toEqual(['dir:z', 'dir:z/deep', 'file:z/deep/file.db']);
    expect(skipped(items)).toEqual([]);
  });

  it('includes can name an empty folder and top-level files', async () => {
    const items = await walk({ includes: ['empty', '*.txt'], excludes: ['B.txt'] });
    expect(entries(items)).toEqual(['file:a.txt', 'dir:empty', 'file:é.txt']);
  });

  it('walkSteps is the same walk, synchronous: the turns of the event loop come as promises between its items, where they fell due', async () => {
    const items = await walk({ excludes: ['b/c.txt'] });
    // A loop whose turn falls due at every third step: what a walk's steps hold then does not depend on the clock.
    class EveryThird extends LoopYield {
      calls = 0;
      readonly turns: Array<Promise<void>> = [];
      override due(): Promise<void> | undefined {
        if (++this.calls % 3 !== 0) return undefined;
        const turn = Promise.resolve();
        this.turns.push(turn);
        return turn;
      }
    }
    const loop = new EveryThird();
    const steps = [...walkSteps(data, { excludes: ['b/c.txt'] }, loop)];
    expect(steps.filter((s) => !(s instanceof Promise))).toEqual(items);
    expect(loop.turns.length).toBeGreaterThan(1);
    expect(steps.filter((s) => s instanceof Promise)).toEqual(loop.turns);
    expect(() => [...walkSteps(path.join(data, 'a.txt'), { excludes: [] })]).toThrow(/is not a folder/);
  });

  it('a missing data folder is an empty bundle', async () => {
    expect(await walk({ excludes: [] }, path.join(root, 'nope'))).toEqual([]);
  });

  it.skipIf(process.getuid?.() === 0)('reports an unreadable folder as skipped with its errno', async () => {
    const locked = path.join(data, 'locked');
    await fsp.mkdir(locked);
    await fsp.writeFile(path.join(locked, 'secret'), 'x');
    await fsp.chmod(locked, 0);
    try {
      const items = await walk({ excludes: [] });
      expect(skipped(items)).toContainEqual({ path: 'locked', reason: 'EACCES' });
      expect(entries(items).filter((p) => p.includes('locked'))).toEqual([]);
    } finally {
      await fsp.chmod(locked, 0o700);
      await fsp.rm(locked, { recursive: true });
    }
  });
});

describe('sortByBytes', () => {
  const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  // Names mixing ASCII, U+E000–U+FFFF (after the surrogates in UTF-16, before them in UTF-8) and astral characters.
  const char = fc.oneof(
    fc.constantFrom('a', 'B', '.', '-', '0', 'é', 'ø', '\uE000', '\uFF5E', '\uFFFD'),
    fc.constantFrom('😀', '𝄞', '\u{10FFFF}'),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
  );
  const name = fc.array(char, { minLength: 1, maxLength: 6 }).map((cs) => cs.join(''));
  it('orders names as their UTF-8 bytes, with or without characters beyond U+FFFF', () => {
    fc.assert(
      fc.property(fc.array(name, { maxLength: 30 }), (names) => {
        expect(sortByBytes([...names])).toEqual([...names].sort(byBytes));
      }),
      { numRuns: 500 },
    );
  });
  it('puts U+E000–U+FFFF before astral characters, as UTF-8 does (UTF-16 code units would not)', () => {
    expect(sortByBytes(['😀', '\uFF5E', 'a'])).toEqual(['a', '\uFF5E', '😀']);
  });
});
