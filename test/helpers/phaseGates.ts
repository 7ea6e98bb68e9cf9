/**
 * Ways to catch a worker inside a given phase by events, not sleeps:
 * - a FIFO gate: a file the worker reads (a bundle's profile, say) replaced by
 *   a named pipe; opening it for writing returns once a reader has opened it,
 *   which then waits until the gate is fed or opened;
 * - stop-on-create: a watch on a folder that SIGSTOPs the worker the moment a
 *   file appears there, so what the phase has done so far can be checked
 *   before it is killed;
 * - the activities a workflow is running, from describe();
 * - a process at the lowest priority, so the test reacts long before it is done.
 */
import { execFileSync } from 'node:child_process';
import { constants as fsc, existsSync, openSync, closeSync, readdirSync, watch } from 'node:fs';
import os from 'node:os';
import { readFile, rename, writeFile, open, type FileHandle } from 'node:fs/promises';
import type { Client } from '@temporalio/client';

export interface FifoGate {
  /** Resolves once a reader has opened the gate; the reader then waits. */
  reader(): Promise<FileHandle>;
  /** Gives a waiting reader the original content. */
  feed(writer: FileHandle): Promise<void>;
  /** Puts the original file back: every later read is an ordinary one. */
  open(): Promise<void>;
}

export async function fifoGate(file: string): Promise<FifoGate> {
  const content = await readFile(file);
  const tmp = `${file}.gate-tmp`;
  await rename(file, tmp);
  execFileSync('mkfifo', ['-m', '600', file]);
  let opened = false;
  return {
    reader: () => open(file, 'w'),
    async feed(writer) {
      await writer.write(content).catch(() => undefined); // EPIPE: the reader was killed meanwhile
      await writer.close();
    },
    async open() {
      if (opened) return;
      opened = true;
      // A writer still waiting for a reader (say, a test that failed early) is let go first.
      try {
        closeSync(openSync(file, fsc.O_RDONLY | fsc.O_NONBLOCK));
      } catch {
        // not a FIFO any more
      }
      await writeFile(tmp, content);
      await rename(tmp, file);
    },
  };
}

/**
 * SIGSTOPs `pid` as soon as a name matching `match` appears in `dir` (which
 * must exist; nothing matching may be there yet). Resolves with that name.
 */
export function stopWhenCreated(dir: string, match: (name: string) => boolean, pid: number): { stopped: Promise<string>; cancel(): void } {
  let cancel = () => {};
  const stopped = new Promise<string>((resolve, reject) => {
    const watcher = watch(dir, (_event, name) => {
      if (!name || !match(name) || !existsSync(`${dir}/${name}`)) return;
      process.kill(pid, 'SIGSTOP');
      watcher.close();
      resolve(name);
    });
    watcher.on('error', reject);
    cancel = () => watcher.close();
  });
  return { stopped, cancel };
}

/** The activity types a workflow has pending (scheduled or running). */
export async function pendingActivities(client: Client, workflowId: string): Promise<string[]> {
  const d = await client.workflow.getHandle(workflowId).describe();
  return (d.raw.pendingActivities ?? []).map((a) => a.activityType?.name ?? '?');
}

/** Gives every thread of `pid` the lowest priority (nice is per thread on Linux). */
export function lowestPriority(pid: number): void {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      os.setPriority(Number(tid), 19);
    } catch {
      // the thread ended meanwhile
    }
  }
}
