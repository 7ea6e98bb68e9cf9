import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { temporalAddress, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

const TOOL = fileURLToPath(new URL('../fixtures/tool.mjs', import.meta.url));

interface Line {
  cb?: string;
  bundleName?: string;
  uri?: string;
  code?: number;
  sessionId?: string;
  released?: boolean;
}

/** Runs the tool fixture; `lines` fills as it prints; `waitFor` resolves on a matching line. */
function runTool(args: string[], taskQueue: string) {
  const child: ChildProcess = spawn(process.execPath, [TOOL, ...args], {
    env: { ...process.env, TEMPORAL_ADDRESS: temporalAddress(), OHBACKUP_TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Line[] = [];
  let buf = '';
  let stderr = '';
  const waiters: Array<{ pred: (l: Line[]) => boolean; resolve: () => void }> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)) as Line);
      buf = buf.slice(nl + 1);
    }
    for (const w of waiters.splice(0)) (w.pred(lines) ? w.resolve : () => waiters.push(w))();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    stderr: () => stderr,
    waitFor: (pred: (l: Line[]) => boolean) => (pred(lines) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ pred, resolve }))),
  };
}

describe('a tool killed and re-attached', () => {
  it('receives the rest of the events, none twice', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-reattach-'));
    const dataRoot = path.join(root, 'device');
    const names = ['com.a.one', 'com.a.two'];
    for (const name of names) await writeBundle(dataRoot, { name, files: { ...bigFiles(4), 'small.txt': 'x' } });
    const taskQueue = uniqueTaskQueue('reattach');
    const cursor = path.join(root, 'cursor');

    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      const first = runTool(['start', cursor, ...names], taskQueue);
      await first.waitFor((l) => l.filter((x) => x.cb === 'onFileReady').length >= 3);
      // Then a kill at a random moment of the stream (fault injection, not a wait). The tool's cursor makes
      // delivery exact unless the kill lands inside a callback, between its effect and the cursor update (µs).
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 700));
      first.child.kill('SIGKILL');
      await first.exited;
      const sessionId = first.lines.find((l) => l.sessionId)!.sessionId!;

      const second = runTool(['attach', cursor, sessionId], taskQueue);
      const code = await second.exited;
      expect(code, second.stderr()).toBe(0);

      const all = [...first.lines, ...second.lines].filter((l) => l.cb);
      for (const name of names) {
        const mine = all.filter((l) => l.bundleName === name);
        const uris = mine.filter((l) => l.cb === 'onFileReady').map((l) => l.uri);
        expect(new Set(uris).size, `${name}: a file twice`).toBe(uris.length);
        expect(uris.sort()).toEqual(['file.0', 'file.1', 'file.2', 'file.3', 'manage.json', 'part.0.tar']);
        expect(mine.filter((l) => l.cb === 'onBundleBegin')).toHaveLength(1);
        expect(mine.filter((l) => l.cb === 'onBundleEnd')).toEqual([{ cb: 'onBundleEnd', bundleName: name }]);
      }
      expect(all.filter((l) => l.cb === 'onAllBundlesEnd')).toHaveLength(1);
      expect(second.lines.some((l) => l.released)).toBe(true);
      // The second tool really did pick up part of the stream.
      expect(second.lines.filter((l) => l.cb === 'onFileReady').length).toBeGreaterThan(0);
    });
  });
});
