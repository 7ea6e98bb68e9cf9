/**
 * `ohbackup completion bash|zsh|fish`: a shell completion script, generated
 * from the program's own commands and options (so it never lags behind them).
 */
import { Argument, type Command, type Option } from 'commander';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

/** One command of the tree, as completion needs it. */
interface CommandSpec {
  /** Its words after `ohbackup` ('' for the program itself). */
  path: string;
  name: string;
  summary: string;
  subcommands: CommandSpec[];
  options: Array<{ flag: string; description: string; takesValue: boolean; choices?: readonly string[] }>;
}

function specOf(cmd: Command, parent?: CommandSpec): CommandSpec {
  const path = parent ? [parent.path, cmd.name()].filter(Boolean).join(' ') : '';
  const options = cmd.options
    .filter((o: Option) => o.long && !o.hidden)
    .map((o: Option) => ({ flag: o.long!, description: o.description, takesValue: o.required || o.optional, choices: o.argChoices }));
  options.push({ flag: '--help', description: 'display help for command', takesValue: false, choices: undefined });
  const spec: CommandSpec = { path, name: cmd.name(), summary: cmd.summary() || cmd.description().split('\n')[0]!, subcommands: [], options };
  spec.subcommands = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden).map((c) => specOf(c, spec));
  return spec;
}

function all(spec: CommandSpec): CommandSpec[] {
  return [spec, ...spec.subcommands.flatMap(all)];
}

/** Single-quoted for a POSIX shell (bash, zsh). */
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
/** Single-quoted for fish. */
const fq = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

function bash(root: CommandSpec): string {
  const specs = all(root);
  const words = (s: CommandSpec) => [...s.subcommands.map((c) => c.name), ...s.options.map((o) => o.flag)].join(' ');
  const valued = specs.flatMap((s) => s.options.filter((o) => o.takesValue).map((o) => ({ s, o })));
  return `# ohbackup completion for bash: eval "$(ohbackup completion bash)", e.g. in ~/.bashrc
_ohbackup() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" cmdpath="" i next
  for ((i = 1; i < COMP_CWORD; i++)); do
    next="\${cmdpath:+$cmdpath }\${COMP_WORDS[i]}"
    case "$next" in
      ${specs
        .filter((s) => s.path)
        .map((s) => sq(s.path))
        .join('|')}) cmdpath="$next" ;;
    esac
  done
  case "$cmdpath:$prev" in
${valued.map(({ s, o }) => `    ${sq(`${s.path}:${o.flag}`)}) ${o.choices ? `COMPREPLY=($(compgen -W ${sq(o.choices.join(' '))} -- "$cur"))` : 'COMPREPLY=()'}; return ;;`).join('\n')}
  esac
  local words
  case "$cmdpath" in
${specs.map((s) => `    ${sq(s.path)}) words=${sq(words(s))} ;;`).join('\n')}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -o bashdefault -F _ohbackup ohbackup
`;
}

function zsh(root: CommandSpec): string {
  const specs = all(root);
  const item = (name: string, text: string) => sq(`${name.replace(/:/g, '\\:')}:${oneLine(text)}`);
  const valued = specs.flatMap((s) => s.options.filter((o) => o.takesValue).map((o) => ({ s, o })));
  return `#compdef ohbackup
# ohbackup completion for zsh: ohbackup completion zsh > "\${fpath[1]}/_ohbackup", or eval "$(ohbackup completion zsh)"
_ohbackup() {
  local cmdpath="" next i
  local -a cmds opts
  for ((i = 2; i < CURRENT; i++)); do
    next="\${cmdpath:+$cmdpath }\${words[i]}"
    case "$next" in
      (${specs
        .filter((s) => s.path)
        .map((s) => sq(s.path))
        .join('|')}) cmdpath="$next" ;;
    esac
  done
  case "$cmdpath:\${words[CURRENT-1]}" in
${valued.map(({ s, o }) => `    (${sq(`${s.path}:${o.flag}`)}) ${o.choices ? `compadd -- ${o.choices.map(sq).join(' ')}` : '_files'}; return ;;`).join('\n')}
  esac
  case "$cmdpath" in
${specs
  .map(
    (s) =>
      `    (${sq(s.path)}) cmds=(${s.subcommands.map((c) => item(c.name, c.summary)).join(' ')}); opts=(${s.options.map((o) => item(o.flag, o.description)).join(' ')}) ;;`,
  )
  .join('\n')}
  esac
  if [[ $PREFIX == -* ]]; then
    _describe -t options option opts
  elif (( \${#cmds} )); then
    _describe -t commands command cmds
  else
    _files
  fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _ohbackup "$@"; else compdef _ohbackup ohbackup; fi
`;
}

function fish(root: CommandSpec): string {
  const lines = ['# ohbackup completion for fish: ohbackup completion fish > ~/.config/fish/completions/ohbackup.fish', 'complete -c ohbackup -f'];
  // A command path is "seen" when each of its words is; at the top level, before any command.
  const seen = (s: CommandSpec) => (s.path ? s.path.split(' ').map((w) => `__fish_seen_subcommand_from ${w}`) : ['__fish_use_subcommand']);
  for (const s of all(root)) {
    const here = [...seen(s), ...(s.subcommands.length && s.path ? [`not __fish_seen_subcommand_from ${s.subcommands.map((c) => c.name).join(' ')}`] : [])];
    const cond = fq(here.join('; and '));
    for (const c of s.subcommands) lines.push(`complete -c ohbackup -n ${cond} -a ${c.name} -d ${fq(oneLine(c.summary))}`);
    for (const o of s.options) {
      const value = o.choices ? ` -x -a ${fq(o.choices.join(' '))}` : o.takesValue ? ' -r -F' : '';
      lines.push(`complete -c ohbackup -n ${cond} -l ${o.flag.slice(2)}${value} -d ${fq(oneLine(o.description))}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The completion script of `program` for `shell`. */
export function completionScript(program: Command, shell: Shell): string {
  const root = specOf(program);
  return shell === 'bash' ? bash(root) : shell === 'zsh' ? zsh(root) : fish(root);
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .summary('print a shell completion script (bash, zsh or fish)')
    .description('Print a completion script for the shell, generated from these commands and their options.')
    .addArgument(new Argument('<shell>', 'the shell').choices(SHELLS))
    .addHelpText(
      'after',
      `
Examples:
  $ ohbackup completion bash > ~/.local/share/bash-completion/completions/ohbackup
  $ eval "$(ohbackup completion bash)"                                   # or this, in ~/.bashrc
  $ ohbackup completion zsh > "\${fpath[1]}/_ohbackup"                   # then start a new zsh
  $ ohbackup completion fish > ~/.config/fish/completions/ohbackup.fish`,
    )
    .action((shell: Shell) => {
      process.stdout.write(completionScript(program, shell));
    });
}
