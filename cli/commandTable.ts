/**
 * The command line's commands, each by the names it adds and a loader of its
 * module. Most of a short command's start is loading modules (a backup's own
 * need little beyond the Temporal client), so a run of one named command
 * loads only that command's module; the overview, help, a mistyped name's
 * suggestion and `completion` (which describes every command) get them all.
 */
import type { Command } from 'commander';

type Register = (program: Command) => void;

/** In the order the overview lists them. */
export const COMMANDS: ReadonlyArray<{ names: readonly string[]; load: () => Promise<Register> }> = [
  { names: ['dev'], load: async () => (await import('./commands/dev.js')).registerDev },
  { names: ['worker'], load: async () => (await import('./commands/worker.js')).registerWorker },
  { names: ['sample-device'], load: async () => (await import('./commands/sampleDevice.js')).registerSampleDevice },
  { names: ['backup'], load: async () => (await import('./commands/backup.js')).registerBackup },
  { names: ['restore'], load: async () => (await import('./commands/restore.js')).registerRestore },
  { names: ['sessions', 'status', 'cancel', 'timer', 'rate', 'release'], load: async () => (await import('./commands/control.js')).registerControl },
  { names: ['schedule'], load: async () => (await import('./commands/schedule/index.js')).registerSchedule },
  { names: ['completion'], load: async () => (await import('./commands/completion.js')).registerCompletion },
  { names: ['repo'], load: async () => (await import('./commands/repo.js')).registerRepo },
  { names: ['snapshots'], load: async () => (await import('./commands/snapshots.js')).registerSnapshots },
  { names: ['check'], load: async () => (await import('./commands/check.js')).registerCheck },
  { names: ['forget'], load: async () => (await import('./commands/forget.js')).registerForget },
  { names: ['diff'], load: async () => (await import('./commands/diff.js')).registerDiff },
  { names: ['follow', 'devices'], load: async () => (await import('./commands/deviceRun.js')).registerDeviceRuns },
];

/** Adds the command `argv` names (its first word), or every command when it names none of them, or `completion`. */
export async function registerCommands(program: Command, argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const named = COMMANDS.filter((c) => c.names.includes(argv[0] ?? ''));
  const wanted = named.length && argv[0] !== 'completion' ? named : COMMANDS;
  for (const register of await Promise.all(wanted.map((c) => c.load()))) register(program);
}
