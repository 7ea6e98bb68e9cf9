/**
 * getBackupDataSize: walks the listed bundles and reports their sizes to the
 * session as `onBackupSizeReport` JSON (api.md §8) every 5 seconds, and at
 * once when done sooner. A precise scan applies the bundle's profile and
 * counts the bytes changed since `lastIncrementalTime`; the fast one sums the
 * data folder as it is.
 */
import type { Device } from './device.js';
import { walkBundle } from './walk.js';

export interface SizeScanItem {
  bundleName: string;
  lastIncrementalTime: number;
}

export interface ScannedSize {
  name: string;
  dataSize: number;
  incDataSize: number;
}

const SIZE_REPORT_EVERY_MS = 5_000;

function sizeReportJson(scaned: ScannedSize[], scanning: string): string {
  return JSON.stringify({ scaned, scanning });
}

export async function scanDataSize(
  device: Device,
  precise: boolean,
  items: SizeScanItem[],
  report: (json: string) => Promise<void>,
  opts: {
    signal?: AbortSignal;
    onTick?: () => void;
    /** Items an earlier attempt already reported (a retry after a worker death resumes after them). */
    from?: number;
    /** After each report: how many items have been reported in all. */
    onReported?: (count: number) => void;
  } = {},
): Promise<void> {
  let unreported: ScannedSize[] = [];
  let scanning = '';
  let lastReport = Date.now();
  let done = opts.from ?? 0;
  const flush = async () => {
    await report(sizeReportJson(unreported, scanning));
    done += unreported.length;
    unreported = [];
    lastReport = Date.now();
    opts.onReported?.(done);
  };
  for (const item of items.slice(done)) {
    opts.onTick?.();
    scanning = item.bundleName;
    const bundle = device.bundle(item.bundleName);
    const loaded = await bundle.profile();
    if (!loaded.ok) {
      unreported.push({ name: item.bundleName, dataSize: -1, incDataSize: -1 });
      continue;
    }
    const profile = precise ? loaded.config : { excludes: [] };
    const since = precise && item.lastIncrementalTime > 0 ? item.lastIncrementalTime * 1000 : undefined;
    let dataSize = 0;
    let incDataSize = 0;
    let n = 0;
    for await (const e of walkBundle(bundle.paths.data, profile)) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (e.type !== 'entry' || e.kind !== 'file') continue;
      dataSize += e.size;
      if (since !== undefined && e.mtimeMs > since) incDataSize += e.size;
      if (++n % 1000 === 0) {
        opts.onTick?.();
        if (Date.now() - lastReport >= SIZE_REPORT_EVERY_MS) await flush();
      }
    }
    unreported.push({ name: item.bundleName, dataSize, incDataSize: since !== undefined ? incDataSize : -1 });
    if (Date.now() - lastReport >= SIZE_REPORT_EVERY_MS) await flush();
  }
  scanning = '';
  await flush();
}
