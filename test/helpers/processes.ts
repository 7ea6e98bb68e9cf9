/** Living processes (not zombies), read from /proc: for "nothing left behind" checks on hooks. */
import { readFileSync, readdirSync } from 'node:fs';

interface Proc {
  pid: number;
  pgrp: number;
  state: string;
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0]!, pgrp: Number(rest[2]) };
  } catch {
    return undefined; // gone meanwhile
  }
}

function living(): Proc[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map((n) => readProc(Number(n)))
    .filter((p): p is Proc => p !== undefined && p.state !== 'Z' && p.state !== 'X');
}

/** Living members of a process group. */
export function groupMembers(pgid: number): number[] {
  return living()
    .filter((p) => p.pgrp === pgid)
    .map((p) => p.pid);
}

/** Living processes whose environment holds `key=value` (a hook's OHBACKUP_BUNDLE, say). */
export function processesWithEnv(key: string, value: string): number[] {
  const want = `${key}=${value}`;
  return living()
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p.pid}/environ`, 'utf8').split('\0').includes(want);
      } catch {
        return false;
      }
    })
    .map((p) => p.pid);
}

/** The process group of a living process. */
export function groupOf(pid: number): number | undefined {
  return readProc(pid)?.pgrp;
}
