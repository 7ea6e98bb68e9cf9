import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SharedFlush, syncFileSystem } from '../../engine/syncFs.js';

const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'ohbackup-syncfs-'));
afterAll(() => fsp.rm(base, { recursive: true, force: true }));

/** A flush the test ends by hand: each call recorded with its target, in order. */
function manualFlush() {
  const calls: Array<{ target: string; end: (err?: Error) => void }> = [];
  const flush = new SharedFlush(
    (target) =>
      new Promise<void>((resolve, reject) => {
        calls.push({ target, end: (err) => (err ? reject(err) : resolve()) });
      }),
  );
  return { flush, calls };
}

/** Lets settled promises run their handlers. */
const turn = () => new Promise<void>((r) => setImmediate(r));

describe('SharedFlush', () => {
  it('a caller alone gets its own flush at once', async () => {
    const { flush, calls } = manualFlush();
    const done = flush.request('/a');
    expect(calls.map((c) => c.target)).toEqual(['/a']);
    calls[0]!.end();
    await done;
  });

  it('callers arriving during a flush share the next one, which starts only after it ended', async () => {
    const { flush, calls } = manualFlush();
    let firstDone = false;
    let laterDone = 0;
    const first = flush.request('/a').then(() => (firstDone = true));
    const later = ['/b', '/c', '/d'].map((t) => flush.request(t).then(() => laterDone++));
    await turn();
    // Not served by the running flush (it may have started before their writes), and no second one yet.
    expect(calls).toHaveLength(1);
    calls[0]!.end();
    await first;
    await turn();
    expect(firstDone).toBe(true);
    expect(laterDone).toBe(0);
    // One flush for the three, of a target of one of them.
    expect(calls).toHaveLength(2);
    expect(['/b', '/c', '/d']).toContain(calls[1]!.target);
    calls[1]!.end();
    await Promise.all(later);
    expect(laterDone).toBe(3);
    // Idle again: the next caller starts its own at once.
    const again = flush.request('/e');
    expect(calls).toHaveLength(3);
    calls[2]!.end();
    await again;
  });

  it('a failed flush fails its callers only; those waiting get a flush of their own', async () => {
    const { flush, calls } = manualFlush();
    const first = flush.request('/a');
    const waiting = flush.request('/b');
    calls[0]!.end(new Error('no such file system'));
    await expect(first).rejects.toThrow('no such file system');
    await turn();
    expect(calls).toHaveLength(2);
    calls[1]!.end();
    await waiting;
  });

  it('a caller arriving while the shared flush runs waits for another one after it', async () => {
    const { flush, calls } = manualFlush();
    const a = flush.request('/a');
    const b = flush.request('/b');
    calls[0]!.end();
    await a;
    await turn();
    expect(calls).toHaveLength(2);
    let cDone = false;
    const c = flush.request('/c').then(() => (cDone = true));
    calls[1]!.end();
    await b;
    await turn();
    expect(cDone).toBe(false);
    expect(calls.map((x) => x.target)).toEqual(['/a', '/b', '/c']);
    calls[2]!.end();
    await c;
  });
});

describe('syncFileSystem', () => {
  it('flushes the file system of a folder, concurrent callers included', async () => {
    const dirs = await Promise.all([1, 2, 3].map((i) => fsp.mkdtemp(path.join(base, `d${i}-`))));
    await Promise.all(dirs.map((d) => fsp.writeFile(path.join(d, 'f'), 'x').then(() => syncFileSystem(d))));
  });

  it('rejects a folder that is not there', async () => {
    await expect(syncFileSystem(path.join(base, 'missing'))).rejects.toThrow(/ENOENT/);
  });
});
