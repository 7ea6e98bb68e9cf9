/** The workflow bundle the workers load: its own modules are evaluated once per workflow thread, not per workflow. */
import { DefaultLogger, bundleWorkflowCode } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { bundlerOptions, workflowsPath } from '../../workers/createWorker.js';

describe('workflow bundle', () => {
  it('preloads the workflows entry, so every workflow shares its modules', async () => {
    const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), ...bundlerOptions(), logger: new DefaultLogger('WARN') });
    const from = code.indexOf('exports.preloadModules = function preloadModules() {');
    const preload = code.slice(from, code.indexOf('exports.importWorkflows', from));
    expect(from).toBeGreaterThanOrEqual(0);
    expect(preload).toMatch(/__webpack_require__\([^)]*"\.\/workflows\/index\.ts"\)/);
  }, 60_000);
});
