/** A backup's bundles paused by another tool (`ohbackup rate … 0`): the bars and lines say so. */
import type { BackupProgressEvent } from '../client/runs/runBackup.js';
import { SessionControl } from '../client/sessions/control.js';
import { watchRates, type RateEvent } from './output/progress.js';

/**
 * Wraps a backup's progress: from its start, the running bundles' send rates
 * are asked (output/progress.ts, watchRates) until `stop`.
 */
export function watchPauses<E extends BackupProgressEvent>(onProgress: (e: E | RateEvent) => void): { onProgress: (e: E) => void; stop(): void } {
  const running = new Set<string>();
  let stopWatching = () => {};
  return {
    onProgress: (e) => {
      if (e.type === 'start') {
        stopWatching();
        const id = e.sessionId;
        stopWatching = watchRates(
          async (names) => (await SessionControl.of(id)).sendRates(names.map((bundleName) => ({ bundleName, state: 'running' }))),
          () => [...running],
          onProgress,
        );
      } else if (e.type === 'begin') running.add(e.bundleName);
      else if (e.type === 'end') running.delete(e.outcome.bundleName);
      onProgress(e);
    },
    stop: () => stopWatching(),
  };
}
