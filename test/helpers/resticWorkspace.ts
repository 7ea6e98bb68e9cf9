/**
 * A unit test file's restic workspace: a private temp folder with a password
 * file, made before its tests and removed after; `unavailable` says why
 * restic cannot run here (its tests then skip with that reason printed).
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { findRestic } from '../../engine/repository/index.js';

export interface ResticWorkspace {
  root: string;
  passwordFile: string;
  unavailable?: string;
}

export function resticWorkspace(prefix: string): ResticWorkspace {
  const w: ResticWorkspace = { root: '', passwordFile: '' };
  beforeAll(async () => {
    w.root = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
    w.passwordFile = path.join(w.root, 'pw');
    await fsp.writeFile(w.passwordFile, 'unit-test-password', { mode: 0o600 });
    try {
      await findRestic(); // built once when missing, hence the long timeout
    } catch (err) {
      w.unavailable = (err as Error).message;
      console.warn(`restic tests skipped: ${w.unavailable}`);
    }
  }, 900_000);
  afterAll(async () => {
    await fsp.rm(w.root, { recursive: true, force: true });
  });
  return w;
}
