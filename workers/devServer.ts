/**
 * The embedded Temporal service: `temporal server start-dev` on loopback with
 * its SQLite database in the state folder, the project's search attributes
 * registered, and the Web UI unless headless.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_FLAGS } from '../common/searchAttributes.js';
import { findTemporalCli } from './temporalCli.js';

export interface DevServerOptions {
  /** gRPC port; 0 picks a free one. */
  port?: number;
  /** UI port; 0 picks a free one; ignored when headless. */
  uiPort?: number;
  headless?: boolean;
  /** SQLite file; the server keeps its state there across restarts. */
  dbFile: string;
  namespace?: string;
  /** Where the server's own log lines go (default: dropped). */
  log?: (line: string) => void;
  readyTimeoutMs?: number;
  /** More `--dynamic-config-value` settings, `key=value` (tests: e.g. an early continue-as-new suggestion). */
  dynamicConfig?: string[];
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  namespace: string;
  process: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const cli = await findTemporalCli();
  const port = opts.port || (await freePort());
  const uiPort = opts.headless ? undefined : opts.uiPort || (await freePort());
  const namespace = opts.namespace ?? 'default';
  await mkdir(opts.dbFile.replace(/\/[^/]*$/, '') || '.', { recursive: true, mode: 0o700 });
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--db-filename',
    opts.dbFile,
    '--namespace',
    namespace,
    '--log-level',
    'warn',
  ];
  if (uiPort) args.push('--ui-port', String(uiPort), '--ui-ip', '127.0.0.1');
  else args.push('--headless');
  for (const sa of SEARCH_ATTRIBUTE_FLAGS) args.push('--search-attribute', sa);
  // Eager activity dispatch: an activity scheduled by a workflow task comes back with that task's
  // answer to the same worker, saving a matching round trip per bundle step (off by default in the server).
  args.push('--dynamic-config-value', 'system.enableActivityEagerExecution=true');
  // SQLite in WAL mode with normal sync: a commit no longer waits for an fsync of its own, which was the
  // server's main cost per workflow task; what is committed survives the server being killed (not a power cut).
  args.push('--sqlite-pragma', 'journal_mode=WAL', '--sqlite-pragma', 'synchronous=NORMAL');
  // The single history shard of the dev server reads its transfer and timer queues at most 20 times a
  // second by default: every workflow task, child start and signal then waits up to 50 ms in the queue, and
  // a bundle is a chain of a dozen of them. Reading on demand cut 100 empty bundles from 17.0 s to 11.7 s.
  args.push('--dynamic-config-value', 'history.transferProcessorMaxPollRPS=1000', '--dynamic-config-value', 'history.timerProcessorMaxPollRPS=1000');
  for (const setting of opts.dynamicConfig ?? []) args.push('--dynamic-config-value', setting);
  const child = spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = opts.log ?? (() => undefined);
  let tail = '';
  const keep = (chunk: Buffer) => {
    const text = chunk.toString();
    tail = (tail + text).slice(-4000);
    for (const line of text.split('\n')) if (line.trim()) log(line);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const address = `127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (;;) {
    const early = await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 200))]);
    if (early !== 'running') throw new Error(`temporal server start-dev exited (code ${early}) before it was ready:\n${tail}`);
    if (await ready(address)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`temporal server start-dev was not ready on ${address} in time:\n${tail}`);
    }
  }
  return {
    address,
    uiUrl: uiPort ? `http://127.0.0.1:${uiPort}` : undefined,
    namespace,
    process: child,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function ready(address: string): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1000 });
    await connection.withDeadline(Date.now() + 2000, () => connection!.workflowService.getSystemInfo({}));
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}
