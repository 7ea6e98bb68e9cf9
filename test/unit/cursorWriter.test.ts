/** The event pump's cursor file: each save leaves exactly the last seq in it, whatever it held before. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { CursorWriter } from '../../client/sessions/eventPump.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'cursor-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const read = (file: string) => Number.parseInt(readFileSync(file, 'utf8'), 10);

it('a shorter seq after a longer one, and a file that held more before, read back as the last seq saved', () => {
  const file = path.join(dir, 'cursor');
  writeFileSync(file, `${'9'.repeat(40)}\n`); // a longer leftover, from some other run
  const w = new CursorWriter(file);
  w.save(123456789);
  expect(read(file)).toBe(123456789);
  w.save(7);
  expect(read(file)).toBe(7);
  expect(readFileSync(file, 'utf8')).toHaveLength(16);
  w.save(8);
  expect(read(file)).toBe(8);
});
