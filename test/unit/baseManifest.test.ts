import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyBaseManifest } from '../../client/baseManifest.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'ohbackup-base-manifest-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The tool's fd on `content`, its offset moved to `at`. */
function toolFd(name: string, content: string, at: number): number {
  const file = path.join(root, name);
  writeFileSync(file, content, { mode: 0o644 });
  const fd = openSync(file, 'r');
  readSync(fd, Buffer.alloc(at), 0, at, null);
  return fd;
}

describe('copyBaseManifest', () => {
  const content = '{"format":"x"}\n' + 'line\n'.repeat(50_000);

  it('copies every byte from the start into a new 0600 file, and leaves the fd and its offset as they were', async () => {
    const fd = toolFd('m1', content, 7);
    try {
      const copy = path.join(root, 'copy1');
      await copyBaseManifest(fd, copy);
      expect(readFileSync(copy, 'utf8')).toBe(content);
      expect(statSync(copy).mode & 0o777).toBe(0o600);
      // The next read continues where the tool left off.
      const next = Buffer.alloc(8);
      readSync(fd, next, 0, 8, null);
      expect(next.toString()).toBe(content.slice(7, 15));
    } finally {
      closeSync(fd);
    }
  });

  it('copies a file the tool unlinked after opening it', async () => {
    const fd = toolFd('m2', content, 0);
    unlinkSync(path.join(root, 'm2'));
    try {
      await copyBaseManifest(fd, path.join(root, 'copy2'));
      expect(readFileSync(path.join(root, 'copy2'), 'utf8')).toBe(content);
    } finally {
      closeSync(fd);
    }
  });

  it('never replaces an existing file', async () => {
    const fd = toolFd('m3', content, 0);
    writeFileSync(path.join(root, 'copy3'), 'kept');
    try {
      await expect(copyBaseManifest(fd, path.join(root, 'copy3'))).rejects.toMatchObject({ code: 'EEXIST' });
      expect(readFileSync(path.join(root, 'copy3'), 'utf8')).toBe('kept');
    } finally {
      closeSync(fd);
    }
  });
});
