// Part of `npm run build`: bundles the compiled workflows once, into dist/workflow-bundle.js.
// Workers load it instead of running webpack at every start, which saves start-up time and
// keeps webpack's memory (about 100 MiB that the process never gives back) out of every worker.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, bundleWorkflowCode } from '@temporalio/worker';
import { sharedWorkflowModules } from '../dist/workers/createWorker.js';

const workflowsPath = fileURLToPath(new URL('../dist/workflows/index.js', import.meta.url));
const target = fileURLToPath(new URL('../dist/workflow-bundle.js', import.meta.url));
const { code } = await bundleWorkflowCode({
  workflowsPath,
  preloadModules: sharedWorkflowModules(workflowsPath),
  logger: new DefaultLogger('WARN'),
});
await writeFile(target, withoutSourcesContent(code));

/**
 * The bundle's inline source map without the sources' text (`sourcesContent`, over a third of the bundle): a worker
 * keeps the bundle and its parsed map in its main isolate and its workflow thread, and the SDK reads the text only
 * with `showStackTraceSources`, which no worker here sets. The mappings stay, so workflow stack traces (the UI's
 * stack trace, failures) still name the source files and lines.
 */
function withoutSourcesContent(bundle) {
  const at = bundle.lastIndexOf('//# sourceMappingURL=data:');
  const data = at < 0 ? -1 : bundle.indexOf('base64,', at);
  if (data < 0) return bundle;
  const start = data + 'base64,'.length;
  const map = JSON.parse(Buffer.from(bundle.slice(start).trim(), 'base64').toString('utf8'));
  delete map.sourcesContent;
  return `${bundle.slice(0, start)}${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
}
