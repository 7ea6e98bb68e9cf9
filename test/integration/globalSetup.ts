/**
 * One real Temporal dev server (the project's own launcher, the same as
 * `ohbackup dev`) for the integration tests, and one workflow bundle built
 * once and shared by every test's Worker.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { DefaultLogger, bundleWorkflowCode } from '@temporalio/worker';
import { startDevServer } from '../../workers/devServer.js';
import { bundlerOptions, workflowsPath } from '../../workers/createWorker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    workflowBundlePath: string;
    stateRoot: string;
  }
}

export default async function setup(project: TestProject) {
  const stateRoot = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-it-'));
  const server = await startDevServer({ headless: true, dbFile: path.join(stateRoot, 'temporal.db') });
  const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), ...bundlerOptions(), logger: new DefaultLogger('WARN') });
  const workflowBundlePath = path.join(stateRoot, 'workflow-bundle.js');
  await writeFile(workflowBundlePath, code);
  project.provide('temporalAddress', server.address);
  project.provide('workflowBundlePath', workflowBundlePath);
  project.provide('stateRoot', stateRoot);
  return async () => {
    await server.stop();
    await rm(stateRoot, { recursive: true, force: true });
  };
}
