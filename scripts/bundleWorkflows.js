// Part of `npm run build`: bundles the compiled workflows once, into dist/workflow-bundle.js.
// Workers load it instead of running webpack at every start, which saves start-up time and
// keeps webpack's memory (about 100 MiB that the process never gives back) out of every worker.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, bundleWorkflowCode } from '@temporalio/worker';

const workflowsPath = fileURLToPath(new URL('../dist/workflows/index.js', import.meta.url));
const target = fileURLToPath(new URL('../dist/workflow-bundle.js', import.meta.url));
const { code } = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
await writeFile(target, code);
