/**
 * One `ohbackup dev` per state folder: `dev.lock` beside `temporal.db`, made
 * with an exclusive create and holding who runs there. A lock whose process is
 * gone (killed, crashed) is stale and taken over, so a crash never leaves the
 * folder stuck; two servers on one SQLite database would corrupt it.
 */
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DEV_LOCK = 'dev.lock';

export interface DevLockHolder {
  pid: number;
  host: string;
  /** Filled in once the server is up. */
  address?: string;
  uiUrl?: string;
  /** The device data root its worker serves. */
  dataRoot?: string;
  startedAt: string;
}

export class StateFolderInUse extends Error {
  constructor(
    readonly lockFile: string,
    readonly holder: DevLockHolder,
  ) {
    super(
      `The state folder ${path.dirname(lockFile)} is in use by another ohbackup dev (pid ${holder.pid} on ${holder.host}` +
        `${holder.address ? `, Temporal ${holder.address}` : ''}${holder.uiUrl ? `, Web UI ${holder.uiUrl}` : ''}, since ${holder.startedAt}). ` +
        `Use it (TEMPORAL_ADDRESS=${holder.address ?? '…'}), stop it, or pick another OHBACKUP_STATE_DIR.`,
    );
  }
}

/** Whether process `pid` of this machine runs (one of another user's too). */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false; // 0 and below would name process groups
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// Another machine's process cannot be checked: assume it runs.
const alive = (holder: DevLockHolder) => holder.host !== os.hostname() || processAlive(holder.pid);

function readHolder(file: string): DevLockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as DevLockHolder;
    return typeof h?.pid === 'number' && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

/** The `ohbackup dev` running on `stateDir`, if one is. */
export function runningDevServer(stateDir: string): DevLockHolder | undefined {
  const holder = readHolder(path.join(stateDir, DEV_LOCK));
  return holder && alive(holder) ? holder : undefined;
}

export interface DevLock {
  /** Records the server's address, UI and data root for whoever finds the folder in use. */
  update(details: Pick<DevLockHolder, 'address' | 'uiUrl' | 'dataRoot'>): void;
  release(): void;
}

/** Takes the state folder's lock (the folder must exist); throws StateFolderInUse when a live process holds it. */
export function lockStateFolder(stateDir: string, details: Pick<DevLockHolder, 'dataRoot'> = {}): DevLock {
  const file = path.join(stateDir, DEV_LOCK);
  let holder: DevLockHolder = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), ...details };
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      try {
        writeSync(fd, JSON.stringify(holder));
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const other = readHolder(file);
      // A lock being written this instant reads as empty: look again before calling it stale.
      if (other && alive(other)) throw new StateFolderInUse(file, other);
      if (attempt >= 3) throw new StateFolderInUse(file, other ?? { pid: 0, host: '?', startedAt: '?' });
      if (other || attempt > 0) {
        // Stale: move it aside under a name of our own, so two takers cannot both remove a fresh lock.
        const aside = `${file}.stale.${process.pid}`;
        try {
          renameSync(file, aside);
          rmSync(aside, { force: true });
        } catch {
          // another taker moved it first
        }
      }
    }
  }
  return {
    update(more) {
      holder = { ...holder, ...more };
      writeFileSync(`${file}.${process.pid}.tmp`, JSON.stringify(holder), { mode: 0o600 });
      renameSync(`${file}.${process.pid}.tmp`, file);
    },
    release() {
      if (readHolder(file)?.pid === process.pid) rmSync(file, { force: true });
    },
  };
}
