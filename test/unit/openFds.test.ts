import { closeSync, openSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OpenFds } from '../../client/sessions/openFds.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'openfds-'));
  writeFileSync(path.join(dir, 'a'), 'a');
  writeFileSync(path.join(dir, 'b'), 'b');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('counts an fd as closed once it is closed, or reused for another file', async () => {
  const fds = new OpenFds();
  const a = openSync(path.join(dir, 'a'), 'r');
  const a2 = openSync(path.join(dir, 'a'), 'r');
  fds.track(a);
  fds.track(a2);
  expect(fds.outstanding()).toBe(2);
  closeSync(a);
  expect(fds.outstanding()).toBe(1);
  // The lowest free number is reused: the same fd, another file — not one of ours any more.
  closeSync(a2);
  const b = openSync(path.join(dir, 'b'), 'r');
  expect(b).toBe(a);
  expect(fds.outstanding()).toBe(0);
  closeSync(b);
});

it('roomFor: at once below the cap; waits for a close at it; false when nothing is closed in time', async () => {
  const fds = new OpenFds();
  const held = [openSync(path.join(dir, 'a'), 'r'), openSync(path.join(dir, 'a'), 'r')];
  for (const fd of held) fds.track(fd);
  expect(await fds.roomFor(1, 3, 0)).toBe(true);
  expect(await fds.roomFor(1, 2, 0)).toBe(false);
  // Closed while it waits: room.
  const waiting = fds.roomFor(1, 2, 60_000);
  setImmediate(() => closeSync(held.pop()!));
  expect(await waiting).toBe(true);
  // Two needed (a file and its manifest) with a cap of one: one at a time is all there can be.
  closeSync(held.pop()!);
  expect(await fds.roomFor(2, 1, 0)).toBe(true);
});
