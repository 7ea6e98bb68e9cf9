// readBundleCounts (client/sets/counts.ts): a full backup's counts from its index's totals, an increment's from its whole index.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readBundleCounts } from '../../client/sets/counts.js';

const entry = (p: string, kind: 'file' | 'dir' = 'file') => ({
  path: p,
  kind,
  size: kind === 'file' ? 3 : 0,
  mode: 0o644,
  mtimeMs: 1,
  sha256: kind === 'file' ? 'a'.repeat(64) : '',
});
const index = (files: object[], extra: object = {}) => ({
  version: 1,
  bundleName: 'app',
  createdAt: '2026-12-02T00:00:00.000Z',
  files: [{ uri: 'part0.tar', kind: 'tar', size: 1024, sha256: 'b'.repeat(64), entries: files }],
  skipped: [],
  totals: { files: files.filter((f) => (f as { kind: string }).kind === 'file').length, dirs: 1, bytes: 6 },
  ...extra,
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ohbackup-counts-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function writeIndex(set: string, body: unknown): void {
  mkdirSync(path.join(dir, set, 'app'), { recursive: true });
  writeFileSync(path.join(dir, set, 'app', 'manage.json'), JSON.stringify(body));
}

describe('readBundleCounts', () => {
  it("a full backup: the index's totals", async () => {
    writeIndex('full', index([entry('d', 'dir'), entry('d/a'), entry('d/b')]));
    expect(await readBundleCounts(path.join(dir, 'full'), 'app')).toEqual({ entries: 3, files: 2, dirs: 1, dataBytes: 6, increment: null });
  });

  it('an increment: new, changed and deleted against its base', async () => {
    writeIndex('base', index([entry('d', 'dir'), entry('d/a'), entry('d/b')]));
    writeIndex('incr', index([entry('d', 'dir'), entry('d/a'), entry('d/c')], { incremental: { baseTime: 1, deleted: [{ path: 'd/b', kind: 'file' }] } }));
    const counts = await readBundleCounts(path.join(dir, 'incr'), 'app', path.join(dir, 'base'));
    expect(counts?.increment).toEqual({ new: 1, changed: 1, deleted: 1, touched: 0, unmodified: 0 });
  });

  it('null for an index that is missing, a link, not JSON, without totals, or an increment with a bad entry', async () => {
    expect(await readBundleCounts(path.join(dir, 'none'), 'app')).toBeNull();
    writeIndex('real', index([entry('d/a')]));
    mkdirSync(path.join(dir, 'link', 'app'), { recursive: true });
    symlinkSync(path.join(dir, 'real', 'app', 'manage.json'), path.join(dir, 'link', 'app', 'manage.json'));
    expect(await readBundleCounts(path.join(dir, 'link'), 'app')).toBeNull();
    mkdirSync(path.join(dir, 'text', 'app'), { recursive: true });
    writeFileSync(path.join(dir, 'text', 'app', 'manage.json'), '{ not json');
    expect(await readBundleCounts(path.join(dir, 'text'), 'app')).toBeNull();
    writeIndex('nototals', { ...index([entry('d/a')]), totals: undefined });
    expect(await readBundleCounts(path.join(dir, 'nototals'), 'app')).toBeNull();
    writeIndex('badincr', index([{ ...entry('d/a'), size: -1 }], { incremental: { baseTime: 1, deleted: [] } }));
    expect(await readBundleCounts(path.join(dir, 'badincr'), 'app')).toBeNull();
  });
});
