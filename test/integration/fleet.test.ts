/**
 * A fleet on one machine: hosts as Linux network namespaces joined by veth
 * links, addresses only in 10.213.0.0/16 on links this test makes.
 *
 *   operator ── temporal ── device-1 ── repository
 *                  │                        │
 *                  └─────── device-2 ───────┘
 *   (and this test process ── temporal, to watch and to scan histories)
 *
 * The Temporal dev server listens on 10.213.0.1 (the temporal host), versitygw
 * (S3) on 10.213.0.2 (the repository host); each device host runs
 * `ohbackup worker --device …` with its own data root and the repository
 * alias in its environment; the operator host runs the CLI, has a route to
 * the Temporal host only, and no forwarding anywhere joins it to the
 * repository host. Skipped, with the reason printed, where namespaces
 * cannot be made.
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { DeviceRunProgress } from '../../common/deviceRun.js';
import { SEARCH_ATTRIBUTE_FLAGS } from '../../common/searchAttributes.js';
import { findGoTool } from '../../engine/goTool.js';
import { findRestic } from '../../engine/repository/index.js';
import { findTemporalCli } from '../../workers/temporalCli.js';
import { compareRestoredBundle } from '../helpers/compareTrees.js';
import { checkJsonOutput, type JsonCommand } from '../../cli/output/schemas.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { VERSITYGW_MODULE } from '../helpers/versitygw.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const tag = `ohbf${process.pid % 100000}`;
const NS = { temporal: `${tag}-tmp`, repo: `${tag}-repo`, d1: `${tag}-d1`, d2: `${tag}-d2`, op: `${tag}-op` };
const TEMPORAL = '10.213.0.1:7233';
/** The users the device hosts and the operator host run as: none can read another's files. */
const UID = { d1: 64531, d2: 64532, op: 64533 };

/** `cmd args` as `uid` (with no supplementary groups), or as this process's user. */
function asUser(uid: number | undefined, cmd: string, args: string[]): string[] {
  return uid === undefined ? [cmd, ...args] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', cmd, ...args];
}

/**
 * A private CA and its certificates (openssl): the Temporal host's and the
 * repository host's server certificates, and a client certificate per host
 * that talks to Temporal. Keys 0600, each owned by the user that uses it.
 */
function makePki(dir: string, owners: Record<string, number>): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=ohbackup fleet test CA');
  const certs: Record<string, string> = {
    temporal: 'subjectAltName=DNS:temporal.fleet,IP:10.213.0.1\nextendedKeyUsage=serverAuth',
    s3: 'subjectAltName=DNS:s3.fleet,IP:10.213.0.2\nextendedKeyUsage=serverAuth',
    ...Object.fromEntries(Object.keys(owners).map((n) => [n, `subjectAltName=DNS:${n}.fleet\nextendedKeyUsage=clientAuth`])),
  };
  for (const [name, ext] of Object.entries(certs)) {
    writeFileSync(path.join(dir, `${name}.ext`), `${ext}\nbasicConstraints=CA:FALSE\n`);
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}.fleet`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
    execFileSync('chmod', ['0600', `${dir}/${name}.key`]);
    execFileSync('chmod', ['0644', `${dir}/${name}.pem`]);
    if (owners[name] !== undefined) execFileSync('chown', [`${owners[name]}:${owners[name]}`, `${dir}/${name}.key`]);
  }
}

/** The Temporal host's front: mutual TLS on 10.213.0.1:7233 (client certificates of the private CA only), on to the dev server on its loopback. */
const TLS_FRONT = `
const tls = require('tls'), net = require('net'), fs = require('fs'), d = process.argv[1];
tls.createServer({ key: fs.readFileSync(d + '/temporal.key'), cert: fs.readFileSync(d + '/temporal.pem'), ca: fs.readFileSync(d + '/ca.pem'),
  requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] }, (s) => {
  const u = net.connect(7234, '127.0.0.1');
  s.pipe(u).pipe(s);
  s.on('error', () => u.destroy());
  u.on('error', () => s.destroy());
}).listen(7233, '10.213.0.1', () => console.log('mTLS front ready'));`;

/** The environment that has a host reach Temporal over mutual TLS with its own certificate (envconfig's TEMPORAL_TLS_*). */
function temporalTls(pki: string, name: string): NodeJS.ProcessEnv {
  return {
    TEMPORAL_TLS: 'true',
    TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(pki, `${name}.pem`),
    TEMPORAL_TLS_CLIENT_KEY_PATH: path.join(pki, `${name}.key`),
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: path.join(pki, 'ca.pem'),
    TEMPORAL_TLS_SERVER_NAME: 'temporal.fleet',
  };
}

function chownR(uid: number, ...paths: string[]): void {
  execFileSync('chown', ['-R', `${uid}:${uid}`, ...paths]);
}
const S3 = '10.213.0.2:7070';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Why namespaces cannot be used here, or undefined when they can. */
function namespacesUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  const probe = `${tag}-probe`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return undefined;
  } catch (err) {
    return `ip netns add fails here (${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()})`;
  }
}

const unavailable = namespacesUnavailable();
if (unavailable) console.log(`fleet.test.ts skipped: ${unavailable}`);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** A command inside a namespace, to its end (bounded). */
function inNs(
  ns: string,
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; uid?: number } = {},
): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', ns, ...asUser(opts.uid, cmd, args)],
      { env: opts.env ?? {}, cwd: opts.cwd, timeout: opts.timeoutMs ?? 180_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A long-running process inside a namespace, in its own process group (a SIGKILL of the group is the host dying). */
function spawnInNs(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string, uid?: number): { child: ChildProcess; output: () => string } {
  const child = spawn('ip', ['netns', 'exec', ns, ...asUser(uid, cmd, args)], { env, cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function killGroup(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    process.kill(-child.pid, signal);
  } catch {
    return Promise.resolve();
  }
  return exited;
}

describe.skipIf(unavailable !== undefined)('a fleet: device-side runs across network namespaces', () => {
  let root: string;
  let opDir: string;
  let client: Client;
  let connection: Connection;
  const devices = { d1: '', d2: '' };
  const processes: ChildProcess[] = [];
  const workers: Record<'d1' | 'd2', ChildProcess | undefined> = { d1: undefined, d2: undefined };
  const made: string[] = [];
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const accessKey = `fleet${randomBytes(6).toString('hex')}`;
  const secretKey = randomBytes(18).toString('hex');
  let workerEnv: (d: 'd1' | 'd2') => NodeJS.ProcessEnv;
  let restic: string;

  let pki: string;
  const opEnv = (): NodeJS.ProcessEnv => ({
    ...temporalTls(pki, 'op'),
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: opDir,
    TMPDIR: path.join(opDir, 'tmp'),
    OHBACKUP_STATE_DIR: path.join(opDir, 'state'),
    TEMPORAL_ADDRESS: TEMPORAL,
  });
  /** The CLI on the operator host. */
  const operator = (args: string[], timeoutMs?: number) => inNs(NS.op, process.execPath, [CLI, ...args], { env: opEnv(), cwd: opDir, timeoutMs, uid: UID.op });
  /** A command's `--json` summary, checked against its published schema; lists unwrapped. */
  const operatorJson = async <T>(args: string[]): Promise<T> => {
    const r = await operator([...args, '--json']);
    expect(r.code, `${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
    const command: JsonCommand =
      args[0] === 'follow'
        ? 'device run'
        : args.includes('--detach')
          ? 'device run started'
          : args.includes('--on-device') && /^(backup|restore)$/.test(args[0]!)
            ? 'device run'
            : (args[0] as JsonCommand);
    const summary = checkJsonOutput(command, r.stdout).at(-1)!;
    return (command === 'snapshots' ? summary.snapshots : command === 'devices' ? summary.devices : summary) as T;
  };

  async function startWorker(d: 'd1' | 'd2'): Promise<void> {
    const w = spawnInNs(
      NS[d],
      process.execPath,
      [CLI, 'worker', '--device', d === 'd1' ? 'dev-1' : 'dev-2', '--data-root', devices[d]],
      workerEnv(d),
      undefined,
      UID[d],
    );
    processes.push(w.child);
    workers[d] = w.child;
    await waitFor(
      `the worker of ${d}`,
      () => w.output().includes('Ctrl-C stops it') || (w.child.exitCode !== null ? Promise.reject(new Error(w.output())) : undefined),
    );
  }

  /** A backup of device-1's photos, at `rate` files a second, started detached from the operator host. */
  const detachPhotos = (rate: number) =>
    operatorJson<{ runId: string }>([
      'backup',
      '--device',
      'dev-1',
      '--repo',
      'fleet',
      '--on-device',
      '--rate',
      String(rate),
      '--detach',
      'com.example.photos',
    ]);

  /** A restore onto device-2, run by its worker, from the repository (a snapshot of any device). */
  const restoreOntoDev2 = (from: string, ...args: string[]) =>
    operatorJson<Run>(['restore', '--device', 'dev-2', '--repo', 'fleet', '--on-device', '--from', from, ...args]);

  /** The heartbeat of a device run's activity, read by this (outside) process. */
  async function progressOf(runId: string): Promise<DeviceRunProgress | undefined> {
    const d = await client.workflow.getHandle(runId).describe();
    const p = d.raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0];
    return p ? (client.options.loadedDataConverter.payloadConverter.fromPayload(p) as DeviceRunProgress) : undefined;
  }

  /** This (outside) process's own client certificate. */
  const testTls = async () => ({
    serverNameOverride: 'temporal.fleet',
    serverRootCACertificate: await readFile(path.join(pki, 'ca.pem')),
    clientCertPair: { crt: await readFile(path.join(pki, 'test.pem')), key: await readFile(path.join(pki, 'test.key')) },
  });

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-fleet-'));
    opDir = path.join(root, 'operator');
    // Others may pass through the test's folder, not list it; each host's own folder is its user's alone.
    await chmod(root, 0o711);
    await mkdir(path.join(opDir, 'tmp'), { recursive: true, mode: 0o700 });
    chownR(UID.op, opDir);
    pki = path.join(root, 'pki');
    await mkdir(pki, { mode: 0o755 });
    makePki(pki, { d1: UID.d1, d2: UID.d2, op: UID.op, test: 0 });
    for (const ns of Object.values(NS)) {
      ip('netns', 'add', ns);
      made.push(ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      // No host forwards: a host reaches only the hosts it has a link to.
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0']);
    }
    ip('-n', NS.temporal, 'addr', 'add', '10.213.0.1/32', 'dev', 'lo');
    ip('-n', NS.repo, 'addr', 'add', '10.213.0.2/32', 'dev', 'lo');
    // [a, aAddr, b, bAddr, service address b offers a]
    const links: Array<[string | null, string, string, string, string]> = [
      [NS.op, '10.213.1.2', NS.temporal, '10.213.1.1', '10.213.0.1'],
      [NS.d1, '10.213.2.2', NS.temporal, '10.213.2.1', '10.213.0.1'],
      [NS.d2, '10.213.3.2', NS.temporal, '10.213.3.1', '10.213.0.1'],
      [NS.d1, '10.213.4.2', NS.repo, '10.213.4.1', '10.213.0.2'],
      [NS.d2, '10.213.5.2', NS.repo, '10.213.5.1', '10.213.0.2'],
      [null, '10.213.6.2', NS.temporal, '10.213.6.1', '10.213.0.1'],
    ];
    for (const [i, [a, aAddr, b, bAddr, service]] of links.entries()) {
      const va = `${tag}a${i}`;
      const vb = `${tag}b${i}`;
      ip('link', 'add', va, 'type', 'veth', 'peer', 'name', vb);
      if (a) ip('link', 'set', va, 'netns', a);
      ip('link', 'set', vb, 'netns', b);
      const aSide = a ? ['-n', a] : [];
      ip(...aSide, 'addr', 'add', `${aAddr}/30`, 'dev', va);
      ip(...aSide, 'link', 'set', va, 'up');
      ip('-n', b, 'addr', 'add', `${bAddr}/30`, 'dev', vb);
      ip('-n', b, 'link', 'set', vb, 'up');
      ip(...aSide, 'route', 'add', `${service}/32`, 'via', bAddr);
    }

    const temporalCli = await findTemporalCli();
    const versitygw = await findGoTool({ name: 'versitygw', module: VERSITYGW_MODULE, envVar: 'OHBACKUP_VERSITYGW' });
    restic = (await findRestic()).path;
    const tmp = spawnInNs(
      NS.temporal,
      temporalCli,
      [
        'server',
        'start-dev',
        // On the Temporal host's loopback only: the other hosts reach it through the mTLS front.
        '--ip',
        '127.0.0.1',
        '--port',
        '7234',
        '--headless',
        '--db-filename',
        path.join(root, 'temporal.db'),
        '--log-level',
        'warn',
        ...SEARCH_ATTRIBUTE_FLAGS.flatMap((sa) => ['--search-attribute', sa]),
      ],
      { PATH: process.env.PATH ?? '', HOME: root },
    );
    processes.push(tmp.child);
    const front = spawnInNs(NS.temporal, process.execPath, ['-e', TLS_FRONT, pki], { PATH: process.env.PATH ?? '' });
    processes.push(front.child);
    const s3dir = path.join(root, 's3');
    await mkdir(s3dir, { mode: 0o700 });
    const gw = spawnInNs(NS.repo, versitygw, ['--port', S3, '--cert', path.join(pki, 's3.pem'), '--key', path.join(pki, 's3.key'), 'posix', s3dir], {
      PATH: process.env.PATH ?? '',
      HOME: root,
      ROOT_ACCESS_KEY: accessKey,
      ROOT_SECRET_KEY: secretKey,
    });
    processes.push(gw.child);

    connection = await waitFor(
      'the Temporal service on 10.213.0.1',
      async () => {
        if (tmp.child.exitCode !== null) throw new Error(`temporal exited: ${tmp.output()}`);
        try {
          const c = await Connection.connect({ address: TEMPORAL, connectTimeout: 1000, tls: await testTls() });
          await c.workflowService.getSystemInfo({});
          return c;
        } catch {
          return undefined;
        }
      },
      90_000,
      500,
    );
    client = new Client({ connection });

    const passwordFile = path.join(root, 'repository.password');
    await writeFile(passwordFile, password, { mode: 0o600 });
    // What each device's user runs and reads: its own copy of the password; restic and the workflow bundle where any user may run them.
    const shared = path.join(root, 'shared');
    await mkdir(shared, { mode: 0o755 });
    await copyFile(restic, path.join(shared, 'restic'));
    await chmod(path.join(shared, 'restic'), 0o755);
    await copyFile(inject('workflowBundlePath'), path.join(shared, 'workflow-bundle.js'));
    await chmod(path.join(shared, 'workflow-bundle.js'), 0o644);
    for (const d of ['d1', 'd2'] as const) {
      await writeFile(path.join(root, `password-${d}`), password, { mode: 0o600 });
      chownR(UID[d], path.join(root, `password-${d}`));
    }
    const repository = `s3:https://${S3}/fleet`;
    // restic trusts the repository host's certificate through the private CA only.
    const s3Env = { AWS_ACCESS_KEY_ID: accessKey, AWS_SECRET_ACCESS_KEY: secretKey, RESTIC_CACERT: path.join(pki, 'ca.pem') };
    await waitFor(
      'restic init from device-1',
      async () => {
        if (gw.child.exitCode !== null) throw new Error(`versitygw exited: ${gw.output()}`);
        const r = await inNs(NS.d1, restic, ['init', '-q'], {
          env: { PATH: process.env.PATH ?? '', HOME: root, RESTIC_REPOSITORY: repository, RESTIC_PASSWORD_FILE: passwordFile, ...s3Env },
          timeoutMs: 30_000,
        });
        return r.code === 0 ? true : undefined;
      },
      60_000,
      500,
    );

    for (const d of ['d1', 'd2'] as const) {
      devices[d] = path.join(root, `device-${d}`);
      await mkdir(devices[d], { mode: 0o700 });
    }
    await writeBundle(devices.d1, {
      name: 'com.example.notes',
      files: { 'a.txt': 'first note', 'dir/b.txt': randomBytes(5000), ...bigFiles(2, 'att') },
    });
    await writeBundle(devices.d1, { name: 'com.example.photos', files: bigFiles(6, 'photo') });
    await writeBundle(devices.d2, { name: 'com.example.docs', files: { 'doc.md': '# doc', 'big.bin': randomBytes(3 * 1024 * 1024) } });

    workerEnv = (d) => ({
      PATH: process.env.PATH ?? '',
      HOME: path.join(root, `state-${d}`),
      TMPDIR: path.join(root, `tmp-${d}`),
      TEMPORAL_ADDRESS: TEMPORAL,
      ...temporalTls(pki, d),
      OHBACKUP_STATE_DIR: path.join(root, `state-${d}`),
      OHBACKUP_WORKFLOW_BUNDLE: path.join(shared, 'workflow-bundle.js'),
      OHBACKUP_RESTIC: path.join(shared, 'restic'),
      OHBACKUP_REPOSITORY_FLEET: repository,
      OHBACKUP_REPOSITORY_FLEET_PASSWORD_FILE: path.join(root, `password-${d}`),
      ...s3Env,
    });
    for (const d of ['d1', 'd2'] as const) {
      for (const dir of [`tmp-${d}`, `state-${d}`]) await mkdir(path.join(root, dir), { mode: 0o700 });
      chownR(UID[d], devices[d], path.join(root, `tmp-${d}`), path.join(root, `state-${d}`));
    }
    await Promise.all([startWorker('d1'), startWorker('d2')]);
  });

  afterAll(async () => {
    await connection?.close().catch(() => undefined);
    for (const p of processes.reverse()) await killGroup(p);
    for (const ns of made) {
      try {
        ip('netns', 'del', ns); // its veths (and the routes over them) go with it
      } catch {
        // already gone
      }
    }
    if (root) await rm(root, { recursive: true, force: true });
  });

  type Run = {
    outcome: string;
    sessionId: string;
    attempt: number;
    bundles: Array<{ bundleName: string; state: string; setFiles: number; setBytes: number }>;
    snapshot?: { id: string; shortId: string; kind: string; device: string; base?: { id: string } };
    snapshots?: Array<{ id: string; device: string; kind: string; bundles: string[]; sessionId: string }>;
    runId: string;
  };
  const snaps: Record<string, Run['snapshot']> = {};

  it('the operator host reaches the Temporal host only, and `devices` lists both device workers with their repository names', async () => {
    expect((await inNs(NS.op, 'ip', ['route', 'get', '10.213.0.2'])).code).not.toBe(0); // "Network is unreachable"
    expect((await inNs(NS.op, 'ip', ['route', 'get', '10.213.0.1'])).code).toBe(0);
    const probe = `require('net').connect(7070,'10.213.0.2').on('connect',()=>process.exit(0)).on('error',()=>process.exit(7))`;
    expect((await inNs(NS.op, process.execPath, ['-e', probe], { env: opEnv() })).code).toBe(7);
    expect((await inNs(NS.d1, process.execPath, ['-e', probe], { env: opEnv() })).code).toBe(0);
    // No host reads another's files: not the operator a device's data or password, not one device the other's data.
    const note = path.join(devices.d1, 'com.example.notes', 'data', 'a.txt');
    for (const [ns, uid, file] of [
      [NS.op, UID.op, note],
      [NS.op, UID.op, path.join(root, 'password-d1')],
      [NS.op, UID.op, path.join(devices.d2, 'com.example.docs', 'data', 'doc.md')],
      [NS.d2, UID.d2, note],
    ] as const) {
      const r = await inNs(ns, 'cat', [file], { uid });
      expect(r.code, `${uid} reads ${file}`).not.toBe(0);
      expect(r.stderr).toMatch(/Permission denied/);
    }
    expect((await inNs(NS.d1, 'cat', [note], { uid: UID.d1 })).stdout).toBe('first note');

    // Temporal over mutual TLS: without a client certificate of the CA (or without TLS) the operator's tool gets nowhere.
    const { TEMPORAL_TLS_CLIENT_CERT_PATH: _c, TEMPORAL_TLS_CLIENT_KEY_PATH: _k, ...noClientCert } = opEnv();
    const refused = await inNs(NS.op, process.execPath, [CLI, 'devices'], { env: noClientCert, cwd: opDir, uid: UID.op, timeoutMs: 60_000 });
    expect(refused.code, refused.stdout).toBe(1);
    expect(refused.stderr).toMatch(/Temporal service|handshake|certificate|connect/i);
    // Nor does a plain (no TLS) client.
    await expect(Connection.connect({ address: TEMPORAL, connectTimeout: 2000 }).then((c) => c.workflowService.getSystemInfo({}))).rejects.toThrow();
    // restic to S3 over TLS: the repository host's certificate is trusted through the private CA only.
    const tlsProbe = (ca?: string) =>
      inNs(NS.d1, process.execPath, [
        '-e',
        `require('tls').connect({ host: '10.213.0.2', port: 7070${ca ? `, ca: require('fs').readFileSync('${ca}')` : ''} })` +
          `.on('secureConnect', () => process.exit(0)).on('error', (e) => { console.error(e.code); process.exit(7); })`,
      ]);
    const untrusted = await tlsProbe();
    expect(untrusted.code).toBe(7);
    expect(untrusted.stderr).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
    expect((await tlsProbe(path.join(pki, 'ca.pem'))).code).toBe(0);

    const list = await waitFor('both devices listed', async () => {
      const l = await operatorJson<Array<{ device: string; live: boolean; repositories: string[]; taskQueue: string; version: string }>>(['devices']);
      return l.filter((d) => d.live).length === 2 ? l : undefined;
    });
    expect(list.map((d) => [d.device, d.taskQueue, d.live, d.repositories])).toEqual([
      ['dev-1', 'ohbackup-device-dev-1', true, ['fleet']],
      ['dev-2', 'ohbackup-device-dev-2', true, ['fleet']],
    ]);
  });

  it('backs up both devices in full, then an increment of one, into the S3 repository, from the operator host', async () => {
    const [one, two] = await Promise.all([
      operatorJson<Run>(['backup', '--device', 'dev-1', '--repo', 'fleet', '--on-device', '--incremental']),
      operatorJson<Run>(['backup', '--device', 'dev-2', '--repo', 'fleet', '--on-device']),
    ]);
    expect(one.outcome).toBe('done');
    expect(two.outcome).toBe('done');
    expect(one.snapshot?.device).toBe('dev-1');
    expect(two.snapshot?.device).toBe('dev-2');
    snaps.full1 = one.snapshot;

    await writeFile(path.join(devices.d1, 'com.example.notes', 'data', 'a.txt'), 'first note, edited');
    await writeFile(path.join(devices.d1, 'com.example.notes', 'data', 'c.txt'), 'a new note');
    chownR(UID.d1, path.join(devices.d1, 'com.example.notes'));
    const inc = await operatorJson<Run>(['backup', '--device', 'dev-1', '--repo', 'fleet', '--on-device', '--base', 'latest', 'com.example.notes']);
    expect(inc.outcome).toBe('done');
    expect(inc.snapshot?.kind).toBe('incremental');
    expect(inc.snapshot?.base?.id).toBe(one.snapshot?.id);
    // Only what changed was handed over: not the two big attachments again.
    expect(inc.bundles[0]!.setBytes).toBeLessThan(1024 * 1024);
    snaps.inc1 = inc.snapshot;
  });

  it("lists every device's snapshots through one device's worker, and restores device-1's bundle onto device-2 (--map), byte for byte", async () => {
    const list = await operatorJson<Run['snapshots']>(['snapshots', '--device', 'dev-2', '--repo', 'fleet', '--on-device']);
    // dev-1: a full incremental session and its increment; dev-2: a plain full backup.
    expect(list!.map((s) => `${s.device} ${s.kind}`).sort()).toEqual(['dev-1 incremental', 'dev-1 incremental', 'dev-2 backup']);

    const r = await restoreOntoDev2(snaps.inc1!.id, 'com.example.notes', '--map', 'com.example.notes=com.example.notes2');
    expect(r.outcome).toBe('done');
    expect(await compareRestoredBundle(devices.d1, devices.d2, 'com.example.notes', 'com.example.notes2')).toEqual([]);
  });

  it("`diff` answered by a device's worker: what the increment changed, from the stored manifests", async () => {
    type Diff = { a: { id: string }; b: { id: string }; bundles: Array<{ bundleName: string; new: string[]; changed: string[]; deleted: string[] }> };
    const d = await operatorJson<Diff>(['diff', '--device', 'dev-2', '--repo', 'fleet', '--on-device', snaps.full1!.id, snaps.inc1!.id]);
    expect([d.a.id, d.b.id]).toEqual([snaps.full1!.id, snaps.inc1!.id]);
    const notes = d.bundles.find((b) => b.bundleName === 'com.example.notes')!;
    expect(notes.new).toEqual([expect.stringMatching(/c\.txt$/)]);
    expect(notes.changed).toEqual([expect.stringMatching(/a\.txt$/)]);
    expect(notes.deleted).toEqual([]);
    // Two devices' snapshots: the device refuses, the command says why (exit 1), and the run is not retried.
    const other = (
      await operatorJson<NonNullable<Run['snapshots']>>(['snapshots', '--device', 'dev-1', '--repo', 'fleet', '--on-device', '--of-device', 'dev-2'])
    )[0]!;
    const mixed = await operator(['diff', '--device', 'dev-1', '--repo', 'fleet', '--on-device', snaps.full1!.id, other.id]);
    expect(mixed.code, mixed.stderr).toBe(1);
    expect(mixed.stderr).toMatch(/diff compares two snapshots of one device/);
  });

  it('a device worker killed (SIGKILL) mid-run and restarted: the run completes, nothing lost, one snapshot', async () => {
    const before = (await operatorJson<Run['snapshots']>(['snapshots', '--device', 'dev-1', '--repo', 'fleet', '--on-device', '--of-device', 'dev-1']))!.length;
    const started = await detachPhotos(1);
    const first = await waitFor('the run mid-session', async () => {
      const p = await progressOf(started.runId);
      return p?.sessionId && p.files >= 2 ? p : undefined;
    });
    await killGroup(workers.d1); // the device host's worker and anything it ran (restic) die at once
    await startWorker('d1');
    const r = await operatorJson<Run>(['follow', started.runId]);
    expect(r.outcome).toBe('done');
    expect(r.attempt).toBeGreaterThanOrEqual(2);
    expect(r.sessionId).not.toBe(first.sessionId);
    // The first attempt's session was released (its claims do not hold the bundle), not left running.
    expect((await client.workflow.getHandle(first.sessionId!).describe()).status.name).not.toBe('RUNNING');
    const after = (await operatorJson<Run['snapshots']>(['snapshots', '--device', 'dev-1', '--repo', 'fleet', '--on-device', '--of-device', 'dev-1']))!;
    expect(after).toHaveLength(before + 1);
    expect(after.filter((s) => s.sessionId === r.sessionId)).toHaveLength(1);

    const restored = await restoreOntoDev2(r.snapshot!.id, '--map', 'com.example.photos=com.example.photos2');
    expect(restored.outcome).toBe('done');
    expect(await compareRestoredBundle(devices.d1, devices.d2, 'com.example.photos', 'com.example.photos2')).toEqual([]);
  });

  it("the operator's command killed mid-run: `ohbackup follow` re-attaches and reports the run's end; Ctrl-C on follow cancels a run and releases its session", async () => {
    const cmd = spawnInNs(
      NS.op,
      process.execPath,
      [CLI, 'backup', '--device', 'dev-1', '--repo', 'fleet', '--on-device', '--rate', '2', 'com.example.photos'],
      opEnv(),
      opDir,
      UID.op,
    );
    processes.push(cmd.child);
    const runId = await waitFor('the run ID on the command', () => /Run (ohbackup-device-backup-\S+) on device/.exec(cmd.output())?.[1]);
    await waitFor('the run mid-session', async () => ((await progressOf(runId))?.files ?? 0) >= 1 || undefined);
    await killGroup(cmd.child);
    const r = await operatorJson<Run>(['follow', runId]);
    expect(r.outcome).toBe('done');
    expect(r.snapshot?.device).toBe('dev-1');

    const started = await detachPhotos(1);
    const follow = spawnInNs(NS.op, process.execPath, [CLI, 'follow', started.runId], opEnv(), opDir, UID.op);
    processes.push(follow.child);
    const p = await waitFor('the run mid-session', async () => {
      const q = await progressOf(started.runId);
      return q?.sessionId && q.files >= 1 ? q : undefined;
    });
    const exited = new Promise<number | null>((res) => follow.child.once('exit', (code) => res(code)));
    process.kill(follow.child.pid!, 'SIGINT'); // ip netns exec execs the command: this is the CLI itself
    expect(await exited).toBe(130);
    expect((await client.workflow.getHandle(started.runId).describe()).status.name).toBe('CANCELLED');
    expect((await client.workflow.getHandle(p.sessionId!).describe()).status.name).not.toBe('RUNNING');
  });

  it('a run for a device with no live worker waits and says so; a device without the alias fails the run naming it', async () => {
    const missing = await operator(['backup', '--device', 'dev-2', '--repo', 'offsite', '--on-device']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('OHBACKUP_REPOSITORY_OFFSITE');
    const waiting = spawnInNs(NS.op, process.execPath, [CLI, 'backup', '--device', 'dev-9', '--repo', 'fleet', '--on-device'], opEnv(), opDir, UID.op);
    processes.push(waiting.child);
    await waitFor('the wait notice', () => waiting.output().includes('Waiting for the worker of device dev-9') || undefined);
    const exited = new Promise<number | null>((res) => waiting.child.once('exit', (code) => res(code)));
    process.kill(waiting.child.pid!, 'SIGINT');
    expect(await exited).toBe(130);
  });

  it('the repository link cut for 30 s while a run is under way: the run resumes and completes, and the repository checks clean', async () => {
    const started = await detachPhotos(2);
    await waitFor('the run mid-session', async () => ((await progressOf(started.runId))?.files ?? 0) >= 1 || undefined);
    const link = `${tag}a3`; // device-1's side of its link to the repository host
    ip('-n', NS.d1, 'link', 'set', link, 'down');
    const cutAt = Date.now();
    try {
      // The session ends while the link is down; storing then waits on the repository host.
      await waitFor('the session ended', async () => (await progressOf(started.runId))?.bundles.every((b) => b.state === 'done') || undefined, 60_000);
      await waitFor('30 s of the link down', () => Date.now() - cutAt >= 30_000 || undefined, 40_000, 1000);
    } finally {
      ip('-n', NS.d1, 'link', 'set', link, 'up');
      ip('-n', NS.d1, 'route', 'replace', '10.213.0.2/32', 'via', '10.213.4.1');
    }
    const r = await operatorJson<Run>(['follow', started.runId]);
    expect(r.outcome).toBe('done');
    expect(r.snapshot?.device).toBe('dev-1');
    expect(r.attempt).toBe(1); // restic itself waited for the repository host: the run was not retried
    // That the repository checks clean (every byte read back) is shown at the end of the forget test below, through the other device.
  });

  it("`forget` answered by a device's worker: a dry run decides per device and keeps chains whole, then one device's snapshots are forgotten and pruned, and the repository checks clean", async () => {
    type Forget = {
      dryRun: boolean;
      pruned: boolean;
      forgotten: string[];
      decisions: Array<{ snapshot: { id: string; device: string }; keep: boolean; reasons: string[] }>;
    };
    const all = (await operatorJson<NonNullable<Run['snapshots']>>(['snapshots', '--device', 'dev-2', '--repo', 'fleet', '--on-device']))!;
    const dry = await operatorJson<Forget>(['forget', '--device', 'dev-2', '--repo', 'fleet', '--on-device', '--keep-last', '1', '--dry-run']);
    expect(dry.dryRun).toBe(true);
    expect(dry.decisions.map((d) => d.snapshot.id).sort()).toEqual(all.map((s) => s.id).sort());
    // Each device keeps its newest: dev-2's only snapshot stays.
    expect(dry.decisions.filter((d) => d.snapshot.device === 'dev-2').every((d) => d.keep)).toBe(true);

    const f = await operatorJson<Forget>([
      'forget',
      '--device',
      'dev-1',
      '--repo',
      'fleet',
      '--on-device',
      '--of-device',
      'dev-1',
      '--keep-last',
      '1',
      '--prune',
    ]);
    expect(f).toMatchObject({ dryRun: false, pruned: true });
    expect(f.decisions.every((d) => d.snapshot.device === 'dev-1')).toBe(true);
    expect(f.forgotten.length).toBe(all.filter((s) => s.device === 'dev-1').length - 1);
    const left = (await operatorJson<NonNullable<Run['snapshots']>>(['snapshots', '--device', 'dev-2', '--repo', 'fleet', '--on-device']))!;
    expect(left.map((s) => s.device).sort()).toEqual(['dev-1', 'dev-2']);
    // The dry run changed nothing: what it would have forgotten was there until the real one.
    expect(f.forgotten.every((id) => dry.forgotten.includes(id))).toBe(true);
    // Clean after everything before (the link cut among it) and the prune: restic's check and every kept bundle read back.
    const checked = await operatorJson<{ ok: boolean; damaged: unknown[]; snapshotsChecked: number }>([
      'check',
      '--device',
      'dev-2',
      '--repo',
      'fleet',
      '--on-device',
      '--read-data',
    ]);
    expect(checked).toMatchObject({ ok: true, damaged: [] });
    expect(checked.snapshotsChecked).toBe(2);
  });

  it('in the Temporal UI a run shows its device, repository, bundles, bytes and outcome, and the device search attribute finds it', async () => {
    const runs: string[] = [];
    for await (const w of client.workflow.list({
      query: `WorkflowType = 'deviceRunWorkflow' AND OhbackupDevice = 'dev-2' AND OhbackupKind = 'device-restore' AND ExecutionStatus = 'Completed'`,
    }))
      runs.push(w.workflowId);
    expect(runs).toHaveLength(2); // the two restores onto device-2
    const handle = client.workflow.getHandle(runs[0]!);
    const d = await handle.describe();
    expect(await d.staticSummary()).toBe('ohbackup restore on device dev-2, repository "fleet"');
    // The run's current details (the UI's "current details"), set by the workflow at its end.
    const meta = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(meta.currentDetails).toMatch(/^done: 1 bundles, \d+ files, \d+ bytes \(device dev-2, repository "fleet"\)$/);
  });

  it('the operator host never held backup data, and no history holds the repository password or the S3 secret', async () => {
    const files: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else files.push(`${path.relative(opDir, p)} ${(await stat(p)).size}`);
      }
    };
    await walk(opDir);
    expect(files).toEqual([]);
    // Nor anywhere else: no file of the operator's user outside its (empty) folder but the key the test gave it.
    // (find's exit code is not asked: other users' files under the temp folder may vanish while it walks.)
    const elsewhere = spawnSync(
      'find',
      [root, os.tmpdir(), '-maxdepth', '3', '-uid', String(UID.op), '-not', '-path', `${opDir}*`, '-not', '-path', path.join(pki, 'op.key')],
      { encoding: 'utf8' },
    );
    expect(elsewhere.stdout.trim()).toBe('');
    let scanned = 0;
    for await (const w of client.workflow.list({ query: `WorkflowType = 'deviceRunWorkflow' OR WorkflowType = 'sessionWorkflow'` })) {
      // The history as the service keeps it (payloads as their raw bytes).
      const bytes = Buffer.from(temporal.api.history.v1.History.encode(await client.workflow.getHandle(w.workflowId, w.runId).fetchHistory()).finish());
      for (const secret of [password, secretKey, path.join(root, 'repository.password')])
        expect(bytes.includes(secret), `${w.workflowId} holds a secret`).toBe(false);
      // The run names its repository by alias only (a session's history need not name it at all).
      if (w.type === 'deviceRunWorkflow') expect(bytes.includes('fleet') || bytes.includes('offsite'), 'the alias travels').toBe(true);
      scanned++;
    }
    expect(scanned).toBeGreaterThan(10);
  });
});
