// ESLint 9 flat config. typescript-eslint's recommended rules without type information (fast),
// plus the import rules that keep each room of the layout (docs/design/architecture.md) in its place.
// A file gets ONE no-restricted-imports setting (a later block replaces an earlier one), so each
// block below lists every restriction that applies to its files.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Node's own modules, bare (`fs`, `fs/promises`) and `node:`-prefixed. */
const nodeBuiltins = {
  paths: builtinModules.filter((m) => !m.startsWith('_')).map((name) => ({ name, message: 'Node built-in.' })),
  patterns: [{ regex: '^node:', message: 'Node built-in.' }],
};
/** Only the command line (cli/) imports cli/. */
const noCli = { regex: '(^|/)cli/', message: 'Only the command line (cli/) imports cli/; move what you need into client/runs/ or common/.' };

/** ['error', options] for @typescript-eslint/no-restricted-imports from groups of { paths?, patterns? }. */
function restrict(...groups) {
  return ['error', { paths: groups.flatMap((g) => g.paths ?? []), patterns: groups.flatMap((g) => g.patterns ?? []) }];
}

const workflowRules = {
  paths: [
    ...nodeBuiltins.paths.map((p) => ({ ...p, message: 'Workflow code must be deterministic: no Node built-ins (run it in an activity).' })),
    ...['uuid', 'nanoid', 'tar-stream', 'picomatch', 'commander', 'cli-progress'].map((name) => ({
      name,
      message: 'Not for workflow code: use the workflow API (uuid4(), Date.now() is replayed) or an activity.',
    })),
  ],
  patterns: [
    { regex: '^node:', message: 'Workflow code must be deterministic: no Node built-ins (run it in an activity).' },
    {
      regex: '^@temporalio/(?!workflow$|common$)',
      message: 'Workflow code imports only @temporalio/workflow and @temporalio/common.',
    },
    {
      // Type-only imports are erased: `import type { createActivities }` is how a workflow proxies its activities.
      regex: '^\\.\\.?/(.*/)?(activities|engine|client|workers|config)(/|$)',
      allowTypeImports: true,
      message: 'Workflow code may only `import type` from activities/, engine/, client/, workers/ and config/.',
    },
  ],
};

const commonRules = {
  paths: nodeBuiltins.paths.map((p) => ({ ...p, message: 'common/ is workflow-safe: no Node built-ins (environment readers belong in config/).' })),
  patterns: [
    { regex: '^node:', message: 'common/ is workflow-safe: no Node built-ins (environment readers belong in config/).' },
    { regex: '^@temporalio/(?!workflow$|common$)', message: 'common/ imports only @temporalio/workflow and @temporalio/common of the SDK.' },
    { regex: '^\\.\\./', message: 'common/ imports nothing of ours outside common/.' },
  ],
};

const engineRules = {
  patterns: [{ regex: '^@temporalio/', message: 'engine/ is pure Node: no Temporal. Temporal adapters live in activities/.' }],
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.ohbackup/', 'coverage/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: 'module',
      // The runtime's own globals (process, Buffer, console, timers, fetch, …) for the plain .js scripts.
      globals: Object.fromEntries(Object.getOwnPropertyNames(globalThis).map((name) => [name, 'readonly'])),
    },
    rules: {
      // The code base's conventions: `_`-prefixed names are deliberately unused.
      // Style, not correctness: reported, not failed.
      'prefer-const': 'warn',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Every default import rule of the base is replaced by the TypeScript-aware one below.
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': restrict({ patterns: [noCli] }),
    },
  },
  {
    // The command line itself, and its tests.
    files: ['cli/**', 'test/**'],
    rules: { '@typescript-eslint/no-restricted-imports': 'off' },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': restrict(workflowRules, { patterns: [noCli] }) },
  },
  {
    files: ['common/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': restrict(commonRules) },
  },
  {
    files: ['engine/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': restrict(engineRules, { patterns: [noCli] }) },
  },
);
