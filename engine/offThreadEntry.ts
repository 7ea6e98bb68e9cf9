/** A thread of the engine's pool (offThread.ts): runs pack and restore jobs, several at once, each abortable. */
import { parentPort } from 'node:worker_threads';
import { readManifest, type ManifestEntry } from './formats/manifest.js';
import { BaseManifestInvalid, sendableError, type FromThread, type PackJob, type RestoreJob, type ToThread } from './offThread.js';
import { packBundle } from './pack/index.js';
import { applyRestore } from './unpack/index.js';

const port = parentPort!;
const running = new Map<number, AbortController>();
const send = (m: FromThread) => port.postMessage(m);

async function pack(opts: PackJob, signal: AbortSignal, onProgress: (p: unknown) => void) {
  const { baseManifestPath, ...rest } = opts;
  let base: Map<string, ManifestEntry> | undefined;
  if (baseManifestPath) {
    try {
      base = (await readManifest(baseManifestPath)).entries;
    } catch (err) {
      throw new BaseManifestInvalid((err as Error).message);
    }
  }
  return packBundle({ ...rest, ...(base ? { base } : {}), signal, onProgress });
}

port.on('message', (m: ToThread) => {
  if (m.type === 'abort') return running.get(m.id)?.abort();
  const ac = new AbortController();
  running.set(m.id, ac);
  const onProgress = (progress: unknown) => send({ type: 'progress', id: m.id, progress });
  const job = m.kind === 'pack' ? pack(m.opts as PackJob, ac.signal, onProgress) : applyRestore({ ...(m.opts as RestoreJob), signal: ac.signal, onProgress });
  job
    .then(
      (result) => send({ type: 'done', id: m.id, result }),
      (err: unknown) => send({ type: 'error', id: m.id, error: sendableError(err) }),
    )
    .finally(() => running.delete(m.id));
});
