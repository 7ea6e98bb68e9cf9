/**
 * `ohbackup completion bash|zsh|fish`: scripts the shells accept, completing
 * commands, subcommands, options and option values as the program has them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const script = (shell: string) => execFileSync(process.execPath, [CLI, 'completion', shell], { encoding: 'utf8' });
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

describe('ohbackup completion', () => {
  it('bash: completes commands, subcommands, options and option values', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-completion-'));
    const file = path.join(dir, 'ohbackup.bash');
    await writeFile(file, script('bash'));
    // What bash would offer after each of these command lines (the last word being completed).
    const complete = (...words: string[]) =>
      execFileSync(
        'bash',
        [
          '-c',
          `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _ohbackup; printf '%s\\n' "\${COMPREPLY[@]}"`,
          'bash',
          file,
          ...words,
        ],
        { encoding: 'utf8' },
      )
        .split('\n')
        .filter(Boolean);
    expect(complete('ohbackup', '')).toEqual(expect.arrayContaining(['dev', 'worker', 'backup', 'restore', 'schedule', 'completion', '--help']));
    expect(complete('ohbackup', 'sch')).toEqual(['schedule']);
    expect(complete('ohbackup', 'schedule', '')).toEqual(expect.arrayContaining(['create', 'list', 'trigger', 'delete']));
    expect(complete('ohbackup', 'schedule', 'create', '--inc')).toEqual(['--incremental']);
    expect(complete('ohbackup', 'worker', '--log')).toEqual(['--log-format']);
    expect(complete('ohbackup', 'worker', '--log-format', '')).toEqual(['text', 'json']);
    expect(complete('ohbackup', 'completion', '--', '')).toEqual(expect.arrayContaining(['--help']));
    // An option that takes a path: bash's own file completion (-o default) takes over.
    expect(complete('ohbackup', 'backup', '--out', '')).toEqual([]);
  });

  it('zsh and fish: the scripts parse, and fish completes from it (checked where the shell is installed)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-completion-'));
    const zsh = script('zsh');
    expect(zsh).toMatch(/^#compdef ohbackup/);
    expect(zsh).toContain("'--log-format:one log line per entry as text or json");
    await writeFile(path.join(dir, '_ohbackup'), zsh);
    if (has('zsh')) expect(spawnSync('zsh', ['-n', path.join(dir, '_ohbackup')], { encoding: 'utf8' }).stderr).toBe('');
    const fish = script('fish');
    expect(fish).toContain("complete -c ohbackup -n '__fish_seen_subcommand_from worker' -l log-format -x -a 'text json'");
    expect(fish).toContain("complete -c ohbackup -n '__fish_seen_subcommand_from schedule; and __fish_seen_subcommand_from create' -l dest -r -F");
    const fishFile = path.join(dir, 'ohbackup.fish');
    await writeFile(fishFile, fish);
    if (has('fish')) {
      expect(spawnSync('fish', ['--no-execute', fishFile], { encoding: 'utf8' }).stderr).toBe('');
      const offered = execFileSync('fish', ['-c', `source ${fishFile}; complete -C 'ohbackup worker --log-format '`], { encoding: 'utf8' });
      expect(offered.split('\n').map((l) => l.split('\t')[0])).toEqual(expect.arrayContaining(['text', 'json']));
    }
  });

  it('refuses an unknown shell (exit 2)', () => {
    const r = spawnSync(process.execPath, [CLI, 'completion', 'tcsh'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Allowed choices are bash, zsh, fish/);
  });
});
