/**
 * A real S3 service for tests: versitygw serving a folder (its posix back
 * end: each top-level folder is a bucket), on a free port of 127.0.0.1, with
 * root keys made up per run and given to it only in its environment. Ready
 * once it answers HTTP; stopped (and its folder removed) by `stop()`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { findGoTool } from '../../engine/goTool.js';

export const VERSITYGW_MODULE = 'github.com/versity/versitygw/cmd/versitygw@v1.7.0';

export interface S3Gateway {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  /** `s3:http://127.0.0.1:PORT/<bucket>`: restic creates the bucket on init. */
  repository(bucket: string): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

async function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => (sock.destroy(), resolve(true)));
    sock.once('error', () => resolve(false));
  });
}

export async function startVersitygw(dir: string): Promise<S3Gateway> {
  const binary = await findGoTool({ name: 'versitygw', module: VERSITYGW_MODULE, envVar: 'OHBACKUP_VERSITYGW' });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const accessKey = `test${randomBytes(6).toString('hex')}`;
  const secretKey = randomBytes(18).toString('hex');
  const port = await freePort();
  const child = spawn(binary, ['--port', `127.0.0.1:${port}`, 'posix', dir], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/', ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      log += c.toString();
      // It prints its banner once the listener is bound.
      if (log.includes(`${port}`) && /listening|bound/i.test(log)) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => reject(new Error(`versitygw exited (${code}) before it listened: ${log.slice(-500)}`)));
  });
  await ready;
  // The banner comes as the listener is being bound: probe until it accepts (bounded; no fixed wait).
  for (let attempt = 0; !(await answers(port)); attempt++) {
    if (attempt >= 200 || child.exitCode !== null) throw new Error(`versitygw says it listens on ${port}, but nothing answers: ${log.slice(-500)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    accessKey,
    secretKey,
    repository: (bucket) => `s3:${endpoint}/${bucket}`,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
