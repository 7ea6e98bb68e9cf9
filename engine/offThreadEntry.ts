/** A thread of the engine's pool (offThread.ts): runs pack and restore jobs, several at once, each abortable. */
import { parentPort } from 'node:worker_threads';
import { runJob, sendableError, type FromThread, type ToThread } from './offThread.js';

const port = parentPort!;
const running = new Map<number, AbortController>();
const send = (m: FromThread) => port.postMessage(m);

port.on('message', (m: ToThread) => {
  if (m.type === 'abort') return running.get(m.id)?.abort();
  const ac = new AbortController();
  running.set(m.id, ac);
  runJob(m.kind, m.opts as never, ac.signal, (progress: unknown) => send({ type: 'progress', id: m.id, progress }))
    .then(
      (result) => send({ type: 'done', id: m.id, result }),
      (err: unknown) => send({ type: 'error', id: m.id, error: sendableError(err) }),
    )
    .finally(() => running.delete(m.id));
});
