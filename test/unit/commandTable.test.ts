/** The command table: each entry names exactly the commands its module adds, and a named command loads alone. */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMANDS, registerCommands } from '../../cli/commandTable.js';

const namesOf = (program: Command) => program.commands.map((c) => c.name());

describe('the command table', () => {
  it.each(COMMANDS.map((c) => [c.names.join(', '), c] as const))('%s: the names its module adds', async (_, entry) => {
    const program = new Command('ohbackup');
    (await entry.load())(program);
    expect(namesOf(program)).toEqual(entry.names);
  });

  it('a named command is added alone; help, a typo and completion get every command, in the overview order', async () => {
    const every = COMMANDS.flatMap((c) => c.names);
    const added = async (argv: string[]) => {
      const program = new Command('ohbackup');
      await registerCommands(program, argv);
      return namesOf(program);
    };
    expect(await added(['backup', '--out', 'x'])).toEqual(['backup']);
    expect(await added(['status', 's'])).toEqual(['sessions', 'status', 'cancel', 'timer', 'rate', 'release']);
    for (const argv of [[], ['--help'], ['help', 'backup'], ['bakup'], ['completion', 'bash']]) expect(await added(argv)).toEqual(every);
  });
});
