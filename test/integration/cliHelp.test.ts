import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/ohbackup', import.meta.url));
const CLI_DOC = fileURLToPath(new URL('../../docs/cli.md', import.meta.url));

function ohbackup(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // No Temporal service is reachable here: help and usage errors must not need one.
  const env = { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' };
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Every command, the options its help must explain, and the least it needs to get past its required options. */
const COMMANDS: Array<{ command: string[]; options: string[]; minimal?: string[] }> = [
  { command: ['dev'], options: ['--port', '--ui-port', '--data-root', '--headless'] },
  { command: ['worker'], options: ['--data-root', '--task-queue', '--device', '--log-format'] },
  { command: ['sample-device'], options: ['--scale', '--seed', '--json'], minimal: ['/tmp/nowhere'] },
  {
    command: ['backup'],
    options: ['--out', '--repo', '--password-file', '--rate', '--incremental', '--base', '--attach', '--on-device', '--detach', '--json'],
    minimal: ['--out', '/tmp/nowhere'],
  },
  {
    command: ['restore'],
    options: [
      '--from',
      '--repo',
      '--password-file',
      '--to',
      '--map',
      '--force',
      '--keep-previous',
      '--dry-run',
      '--on-device',
      '--from-device',
      '--detach',
      '--json',
    ],
    minimal: ['--from', '/tmp/nowhere'],
  },
  { command: ['repo', 'init'], options: ['--repo', '--password-file', '--json'] },
  { command: ['snapshots'], options: ['--repo', '--password-file', '--device', '--on-device', '--of-device', '--bundle', '--json'] },
  { command: ['check'], options: ['--repo', '--password-file', '--read-data', '--read-data-subset', '--on-device', '--device', '--json'] },
  {
    command: ['forget'],
    options: [
      '--repo',
      '--keep-last',
      '--keep-daily',
      '--keep-weekly',
      '--keep-monthly',
      '--device',
      '--on-device',
      '--of-device',
      '--prune',
      '--dry-run',
      '--json',
    ],
    minimal: ['--keep-last', '1'],
  },
  { command: ['diff'], options: ['--repo', '--password-file', '--on-device', '--device', '--json'], minimal: ['aaaa', 'bbbb'] },
  { command: ['sessions'], options: ['--running', '--bundle', '--kind', '--limit', '--json'] },
  { command: ['status'], options: ['--json'], minimal: ['some-session'] },
  { command: ['cancel'], options: ['--json'], minimal: ['some-session', 'com.example.notes'] },
  { command: ['timer'], options: ['--json'], minimal: ['some-session', 'com.example.notes', '1000'] },
  { command: ['rate'], options: ['--json'], minimal: ['some-session', 'com.example.notes', '10'] },
  { command: ['release'], options: ['--json'], minimal: ['some-session'] },
  {
    command: ['schedule', 'create'],
    options: [
      '--dest',
      '--repo',
      '--bundles',
      '--cron',
      '--every',
      '--timezone',
      '--incremental',
      '--full-every',
      '--timeout',
      '--keep-last',
      '--keep-daily',
      '--rate',
      '--task-queue',
      '--paused',
      '--note',
      '--json',
    ],
    minimal: ['nightly', '--dest', '/tmp/nowhere', '--every', '24h'],
  },
  { command: ['schedule', 'list'], options: ['--json'] },
  { command: ['schedule', 'describe'], options: ['--json'], minimal: ['nightly'] },
  { command: ['schedule', 'pause'], options: ['--note', '--json'], minimal: ['nightly'] },
  { command: ['schedule', 'unpause'], options: ['--note', '--json'], minimal: ['nightly'] },
  { command: ['schedule', 'trigger'], options: ['--wait', '--json'], minimal: ['nightly'] },
  { command: ['schedule', 'delete'], options: ['--json'], minimal: ['nightly'] },
  { command: ['completion'], options: [], minimal: ['bash'] },
  { command: ['follow'], options: ['--json'], minimal: ['ohbackup-device-backup-x-1'] },
  { command: ['devices'], options: ['--json'] },
];

describe('the command line help', () => {
  it('the top-level help lists every command, the exit codes and how to get more help', async () => {
    const r = await ohbackup(['--help']);
    expect(r.code, r.stderr).toBe(0);
    for (const name of new Set(COMMANDS.map((c) => c.command[0]!))) expect(r.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    expect(r.stdout).toMatch(/Exit codes:/);
    for (const code of ['0', '1', '2', '3', '130']) expect(r.stdout).toMatch(new RegExp(`^  ${code} +\\S`, 'm'));
    expect(r.stdout).toMatch(/ohbackup <command> --help/);
    const schedule = await ohbackup(['schedule', '--help']);
    expect(schedule.code, schedule.stderr).toBe(0);
    for (const sub of COMMANDS.filter((c) => c.command[0] === 'schedule')) expect(schedule.stdout).toMatch(new RegExp(`^  ${sub.command[1]}\\b`, 'm'));
  });

  it.each(COMMANDS.map((c) => [c.command.join(' '), c] as const))('`%s --help` explains every option and gives examples', async (_name, c) => {
    const r = await ohbackup([...c.command, '--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: ohbackup ${c.command.join(' ')}`));
    // A description paragraph after the usage line.
    expect(r.stdout.split('\n')[2]!.trim().length).toBeGreaterThan(10);
    for (const option of c.options) {
      // The option, then its explanation on the same line.
      expect(r.stdout, option).toMatch(new RegExp(`^ +${option}( <[^>]+>)? +\\S`, 'm'));
    }
    expect(r.stdout).toMatch(/^Examples:\n {2}\$ ohbackup /m);
  });

  it.each(COMMANDS.map((c) => [c.command.join(' '), c] as const))('`%s` with an unknown option is wrong usage: exit 2 and a message', async (_name, c) => {
    const r = await ohbackup([...c.command, ...(c.minimal ?? []), '--no-such-option']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--no-such-option'/);
    expect(r.stderr).toMatch(/add --help for usage/);
  });

  it('docs/cli.md has a section for every command, naming every option its help lists', async () => {
    const doc = readFileSync(CLI_DOC, 'utf8');
    /** The text from the heading `ohbackup <command>` to the next heading. */
    const section = (command: string) => {
      const m = new RegExp(`^#{2,3} ohbackup ${command}\\n([\\s\\S]*?)(?=^#{1,3} |(?![\\s\\S]))`, 'm').exec(doc);
      return m?.[1];
    };
    const top = await ohbackup(['--help']);
    const schedule = await ohbackup(['schedule', '--help']);
    const repo = await ohbackup(['repo', '--help']);
    const listed = (help: string) => [...help.matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    const commands = [
      ...listed(top.stdout.split('Commands:')[1]!.split('\n\n')[0]!).filter((c) => c !== 'schedule'),
      ...listed(schedule.stdout.split('Commands:')[1]!).map((c) => `schedule ${c}`),
      ...listed(repo.stdout.split('Commands:')[1]!).map((c) => `repo ${c}`),
    ];
    expect(commands).toEqual(expect.arrayContaining(COMMANDS.map((c) => c.command.join(' '))));
    for (const command of commands) {
      const text = section(command);
      expect(text, `a section "ohbackup ${command}" in docs/cli.md`).toBeDefined();
      const help = (await ohbackup([...command.split(' '), '--help'])).stdout;
      const options = [...help.split('Options:')[1]!.matchAll(/^ +(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((o) => o !== '--help');
      for (const option of options) expect(text, `${command} ${option}`).toMatch(new RegExp(`\`${option}[\` ]`));
    }
  });

  it('an unknown command and a bad argument are wrong usage too', async () => {
    const unknown = await ohbackup(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    const badBundle = await ohbackup(['cancel', 'some-session', 'not a bundle']);
    expect(badBundle.code).toBe(2);
    expect(badBundle.stderr).toMatch(/invalid for argument 'bundle'/);
    const badKind = await ohbackup(['sessions', '--kind', 'weekly']);
    expect(badKind.code).toBe(2);
    expect(badKind.stderr).toMatch(/expected one of backup, restore, incremental/);
    // Where a run runs is stated: --on-device needs the device and its alias; the device-only options need --on-device.
    for (const [args, message] of [
      [['backup', '--on-device', '--repo', 'offsite'], /--on-device with --device D --repo NAME/],
      [['backup', '--device', 'd', '--repo', 'offsite', '--detach'], /--detach goes with --on-device/],
      [['backup', '--device', 'd', '--repo', 'offsite', '--on-device', '--out', '/tmp/nowhere'], /not with --on-device/],
      [['restore', '--device', 'd', '--repo', 'offsite', '--on-device', '--from', 'latest', '--to', '/tmp/nowhere'], /not with --on-device/],
      [['snapshots', '--repo', 'offsite', '--of-device', 'd'], /--of-device goes with --on-device/],
      [['check', '--repo', 'offsite', '--on-device'], /--on-device goes with --device D --repo NAME/],
      [['diff', '--device', 'd', 'aaaa', 'bbbb'], /--device goes with --on-device/],
    ] as const) {
      const r = await ohbackup([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    const badId = await ohbackup(['schedule', 'describe', '../x']);
    expect(badId.code).toBe(2);
    expect(badId.stderr).toMatch(/is not a schedule ID/);
  });

  it("bin/ohbackup runs the command line with its compile cache in the user's cache folder", async () => {
    const cache = mkdtempSync(path.join(os.tmpdir(), 'ohbackup-cache-'));
    try {
      const env = { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1', XDG_CACHE_HOME: cache };
      delete env.NODE_DISABLE_COMPILE_CACHE;
      const run = () =>
        new Promise<{ code: number; stdout: string }>((resolve) =>
          execFile(BIN, ['--version'], { env }, (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout })),
        );
      const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
      // Twice: the second run reads what the first one cached.
      for (let i = 0; i < 2; i++) expect(await run()).toEqual({ code: 0, stdout: `${version}\n` });
      const dir = path.join(cache, 'ohbackup', 'node-compile-cache');
      expect(existsSync(dir) && readdirSync(dir).length).toBeGreaterThan(0);
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
