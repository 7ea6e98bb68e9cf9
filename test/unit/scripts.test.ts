// The bench, load and soak scripts are not run by CI (they take minutes): at least every one of them
// and their helpers must parse, and their --help must work, so a broken script is caught here.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const scripts = [
  ...readdirSync(`${root}/scripts`)
    .filter((f) => f.endsWith('.js'))
    .map((f) => `scripts/${f}`),
  ...readdirSync(`${root}/bench`)
    .filter((f) => f.endsWith('.js'))
    .map((f) => `bench/${f}`),
];

describe('scripts', () => {
  it.each(scripts)('%s parses', (file) => {
    expect(() => execFileSync(process.execPath, ['--check', file], { cwd: root, stdio: 'pipe' })).not.toThrow();
  });

  it.each([
    'scripts/bench.js',
    'scripts/load.js',
    'scripts/soak.js',
    'scripts/benchMany.js',
    'scripts/benchIncrement.js',
    'scripts/traceBackup.js',
    'scripts/benchApply.js',
  ])('%s --help prints its usage and exits 0', (file) => {
    const out = execFileSync(process.execPath, [file, '--help'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    expect(out).toMatch(/Usage|usage/);
  });
});
