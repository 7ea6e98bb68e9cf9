/** The backup set writer's flush: every kept file is flushed before makeDurable returns, also one kept while it runs. */
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { BackupSetWriter } from '../../client/sets/writer.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'set-writer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An fd on a new source file, as the tool is handed one. */
function handed(name: string, body: string): number {
  const file = path.join(dir, 'src', name);
  writeFileSync(file, body);
  return openSync(file, 'r');
}

it('makeDurable returns once every kept file is flushed, however many wait', async () => {
  mkdirSync(path.join(dir, 'src'));
  const set = new BackupSetWriter(path.join(dir, 'set'));
  await set.init();
  const names = Array.from({ length: 10 }, (_, i) => `file.${i}`);
  for (const [i, name] of names.entries()) set.keepNow(`com.example.b${i % 3}`, name, handed(name, `body ${i}`));
  expect(set.unflushed()).toBe(names.length);
  await set.makeDurable();
  expect(set.unflushed()).toBe(0);
  for (const [i, name] of names.entries()) expect(readFileSync(path.join(dir, 'set', `com.example.b${i % 3}`, name), 'utf8')).toBe(`body ${i}`);

  // Kept while a makeDurable waits (the run flushes during the release, then again for the trailing files).
  const first = set.makeDurable();
  set.keepNow('com.example.late', 'file.late', handed('file.late', 'late'));
  await first;
  await set.makeDurable();
  expect(set.unflushed()).toBe(0);
  expect(readFileSync(path.join(dir, 'set', 'com.example.late', 'file.late'), 'utf8')).toBe('late');
});
