/**
 * The sessions open in this process. `backup.updateTimer` and
 * `backup.updateSendRate` name only a bundle, as in the reference: they act on
 * the open session in which that bundle is running.
 */
export interface OpenSession {
  bundleView(bundleName: string): 'appended' | 'running' | 'ended' | undefined;
  signalBundle(bundleName: string, what: 'updateTimer' | 'updateSendRate', value: number): void;
}

const open = new Set<OpenSession>();

export const registry = {
  add: (s: OpenSession) => void open.add(s),
  remove: (s: OpenSession) => void open.delete(s),
  running(bundleName: string): OpenSession | undefined {
    for (const s of open) if (s.bundleView(bundleName) === 'running') return s;
    return undefined;
  },
};
