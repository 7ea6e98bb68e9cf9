/**
 * A backup set on disk, as `ohbackup backup` writes it: every handed-over file
 * under `<bundle>/<uri>`, the capability file, and `backup_set.json`, the
 * session summary. Private to its owner (folders 0700, files 0600). A file
 * becomes visible under its name only once completely copied.
 */
import { close, createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { BundleOutcome } from '../common/session.js';

export const SET_SUMMARY = 'backup_set.json';
export const SET_CAPABILITIES = 'capabilities.json';

const closeFd = promisify(close);

export interface BackupSetSummary {
  version: 1;
  sessionId: string;
  kind: 'backup' | 'incremental';
  createdAt: string;
  bundles: BundleOutcome[];
}

export class BackupSetWriter {
  private pending = new Set<Promise<void>>();
  private failures: Error[] = [];

  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Copies the fd's bytes to `<bundle>/<name>` and closes the fd (the tool owns it). */
  keep(bundleName: string, name: string, fd: number): void {
    const job = this.copy(bundleName, name, fd).catch((err: Error) => void this.failures.push(err));
    this.pending.add(job);
    void job.finally(() => this.pending.delete(job));
  }

  private async copy(bundleName: string, name: string, fd: number): Promise<void> {
    const dir = path.join(this.dir, bundleName);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const target = path.join(dir, name);
    const partial = `${target}.partial`;
    try {
      await pipeline(createReadStream('', { fd, autoClose: false, start: 0 }), createWriteStream(partial, { mode: 0o600 }));
    } finally {
      await closeFd(fd);
    }
    await rename(partial, target);
  }

  /** Waits for every copy started so far; throws the first copy failure. */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    if (this.failures.length) throw this.failures[0];
  }

  async writeJson(name: string, value: unknown): Promise<void> {
    await writeFile(path.join(this.dir, name), JSON.stringify(value, null, 2), { mode: 0o600 });
  }
}
