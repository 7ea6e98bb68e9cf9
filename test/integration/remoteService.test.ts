/**
 * A worker and a tool configured for a remote Temporal service through
 * Temporal's standard environment configuration (@temporalio/envconfig):
 * TLS with a client certificate, a server CA and a server name, and an API
 * key, from environment variables or from a TOML profile.
 *
 * The first tests check what the configuration loads into. The last runs a
 * real backup end to end over mutual TLS with an API key: `temporal server
 * start-dev` (CLI v1.5.1) has no TLS options, so a TLS- and key-checking
 * HTTP/2 proxy (test/helpers/tlsProxy.ts) stands in front of the dev server,
 * and the worker process (configured by environment variables) and the
 * `ohbackup backup` command (configured by a TOML profile) reach the service
 * only through it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSummary } from '../helpers/cliJson.js';
import { temporalTarget } from '../../config/temporalConfig.js';
import { makeCerts, opensslAvailable } from '../helpers/certs.js';
import { bigFiles, writeBundle } from '../helpers/device.js';
import { temporalAddress, uniqueTaskQueue } from '../helpers/temporal.js';
import { startTlsProxy } from '../helpers/tlsProxy.js';
import { compareBundleSet } from '../helpers/verifySet.js';
import { startWorkerProcess } from '../helpers/workerProcess.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** An environment with nothing of Temporal's in it, and a home without a temporal.toml. */
function cleanEnv(home: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_')));
  return { ...env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') };
}

async function pemFiles(dir: string) {
  const files = { ca: path.join(dir, 'ca.pem'), crt: path.join(dir, 'client.pem'), key: path.join(dir, 'client.key') };
  await writeFile(files.ca, '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n');
  await writeFile(files.crt, '-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n');
  await writeFile(files.key, '-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n');
  return files;
}

const bytes = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : undefined);

function ohbackup(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('the Temporal connection configuration', () => {
  it('defaults to the local dev server without TLS', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-cfg-'));
    const t = temporalTarget({}, cleanEnv(home));
    expect(t.connectionOptions.address).toBe('127.0.0.1:7233');
    expect(t.namespace).toBe('default');
    expect(t.connectionOptions.tls).toBeUndefined();
    expect(t.connectionOptions.apiKey).toBeUndefined();
  });

  it('carries TLS (client certificate and key, server CA, server name) and the API key from environment variables', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-cfg-'));
    const pem = await pemFiles(home);
    const t = temporalTarget(
      {},
      {
        ...cleanEnv(home),
        TEMPORAL_ADDRESS: 'ns1.acct.tmprl.cloud:7233',
        TEMPORAL_NAMESPACE: 'ns1.acct',
        TEMPORAL_API_KEY: 'key-from-env',
        TEMPORAL_TLS_CLIENT_CERT_PATH: pem.crt,
        TEMPORAL_TLS_CLIENT_KEY_PATH: pem.key,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: pem.ca,
        TEMPORAL_TLS_SERVER_NAME: 'temporal.example',
        TEMPORAL_GRPC_META_X_TEAM: 'ops',
      },
    );
    expect(t.connectionOptions.address).toBe('ns1.acct.tmprl.cloud:7233');
    expect(t.namespace).toBe('ns1.acct');
    expect(t.connectionOptions.apiKey).toBe('key-from-env');
    expect(t.connectionOptions.metadata).toEqual({ 'x-team': 'ops' });
    const tls = t.connectionOptions.tls as Exclude<typeof t.connectionOptions.tls, boolean | null | undefined>;
    expect(tls.serverNameOverride).toBe('temporal.example');
    expect(bytes(tls.serverRootCACertificate)).toBe(await readFile(pem.ca, 'utf8'));
    expect(bytes(tls.clientCertPair?.crt)).toBe(await readFile(pem.crt, 'utf8'));
    expect(bytes(tls.clientCertPair?.key)).toBe(await readFile(pem.key, 'utf8'));
    // Explicit overrides (`ohbackup dev`, tests) win over the environment's address and namespace only.
    const o = temporalTarget({ address: '10.0.0.1:7233', namespace: 'other' }, { ...cleanEnv(home), TEMPORAL_API_KEY: 'k' });
    expect(o.connectionOptions).toMatchObject({ address: '10.0.0.1:7233', apiKey: 'k' });
    expect(o.namespace).toBe('other');
  });

  it('carries the same from a TOML profile (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE), environment variables winning over it', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-cfg-'));
    const pem = await pemFiles(home);
    const file = path.join(home, 'temporal.toml');
    await writeFile(
      file,
      [
        '[profile.default]',
        'address = "127.0.0.1:7233"',
        '',
        '[profile.remote]',
        'address = "temporal.example:7233"',
        'namespace = "backups"',
        'api_key = "key-from-profile"',
        '[profile.remote.tls]',
        `client_cert_path = "${pem.crt}"`,
        `client_key_path = "${pem.key}"`,
        `server_ca_cert_path = "${pem.ca}"`,
        'server_name = "temporal.example"',
        '',
        '[profile.keyonly]',
        'address = "cloud.example:7233"',
        'api_key = "just-a-key"',
        '',
      ].join('\n'),
    );
    const env = { ...cleanEnv(home), TEMPORAL_CONFIG_FILE: file };
    const remote = temporalTarget({}, { ...env, TEMPORAL_PROFILE: 'remote' });
    expect(remote.connectionOptions).toMatchObject({ address: 'temporal.example:7233', apiKey: 'key-from-profile' });
    expect(remote.namespace).toBe('backups');
    const tls = remote.connectionOptions.tls as Exclude<typeof remote.connectionOptions.tls, boolean | null | undefined>;
    expect(tls.serverNameOverride).toBe('temporal.example');
    expect(bytes(tls.clientCertPair?.crt)).toBe(await readFile(pem.crt, 'utf8'));
    expect(bytes(tls.clientCertPair?.key)).toBe(await readFile(pem.key, 'utf8'));
    expect(bytes(tls.serverRootCACertificate)).toBe(await readFile(pem.ca, 'utf8'));

    // The default profile when none is named; the environment over the profile.
    expect(temporalTarget({}, env).connectionOptions.tls).toBeUndefined();
    const mixed = temporalTarget({}, { ...env, TEMPORAL_PROFILE: 'remote', TEMPORAL_NAMESPACE: 'from-env', TEMPORAL_API_KEY: 'key-from-env' });
    expect(mixed.namespace).toBe('from-env');
    expect(mixed.connectionOptions.apiKey).toBe('key-from-env');
    // An API key alone turns TLS on (system roots); TEMPORAL_TLS=false turns it off again.
    expect(temporalTarget({}, { ...env, TEMPORAL_PROFILE: 'keyonly' }).connectionOptions.tls).toBe(true);
    expect(temporalTarget({}, { ...env, TEMPORAL_PROFILE: 'keyonly', TEMPORAL_TLS: 'false' }).connectionOptions.tls).toBe(false);
    // A profile that is not there is an error, not a silent fallback to localhost.
    expect(() => temporalTarget({}, { ...env, TEMPORAL_PROFILE: 'nope' })).toThrow(/Profile 'nope' not found/);
  });

  it.skipIf(!opensslAvailable())(
    'lets a worker (environment variables) and `ohbackup backup` (a TOML profile) back up over mutual TLS with an API key',
    async () => {
      const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-tls-'));
      const certs = await makeCerts(root);
      const apiKey = `key-${Math.random().toString(36).slice(2)}`;
      const proxy = await startTlsProxy({ upstream: temporalAddress(), certs, apiKey });
      const dataRoot = path.join(root, 'device');
      const names = ['com.example.tls1', 'com.example.tls2'];
      for (const [i, name] of names.entries()) await writeBundle(dataRoot, { name, files: { 'a.txt': name, 'd/e.txt': 'e', ...bigFiles(1, `b${i}-`) } });
      const taskQueue = uniqueTaskQueue('tls');
      const base = cleanEnv(root);
      const worker = await startWorkerProcess({
        taskQueue,
        dataRoot,
        stateDir: path.join(root, 'state'),
        address: proxy.address,
        env: {
          ...(base as Record<string, string>),
          TEMPORAL_API_KEY: apiKey,
          TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCert,
          TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKey,
          TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.caCert,
          TEMPORAL_TLS_SERVER_NAME: certs.serverName,
        },
      });
      try {
        const toml = path.join(root, 'temporal.toml');
        await writeFile(
          toml,
          [
            '[profile.remote]',
            `address = "${proxy.address}"`,
            `api_key = "${apiKey}"`,
            '[profile.remote.tls]',
            `client_cert_path = "${certs.clientCert}"`,
            `client_key_path = "${certs.clientKey}"`,
            `server_ca_cert_path = "${certs.caCert}"`,
            `server_name = "${certs.serverName}"`,
            '',
          ].join('\n'),
        );
        const tool = {
          ...base,
          TEMPORAL_CONFIG_FILE: toml,
          TEMPORAL_PROFILE: 'remote',
          OHBACKUP_TASK_QUEUE: taskQueue,
          OHBACKUP_STATE_DIR: path.join(root, 'tool-state'),
        };
        const out = path.join(root, 'set');
        const run = await ohbackup(['backup', '--out', out, '--json'], tool);
        expect(run.code, run.stderr).toBe(0);
        const result = jsonSummary<{ bundles: Array<{ bundleName: string; state: string }> }>(run.stdout, 'backup');
        expect(result.bundles.map((b) => [b.bundleName, b.state])).toEqual(names.map((n) => [n, 'done']));
        for (const n of names) expect(await compareBundleSet(out, dataRoot, n)).toEqual([]);

        // Both went through the proxy with the key: the worker's Core client (user agent tonic/…) and the tool's grpc-js client.
        const agents = [...proxy.accepted.keys()];
        expect(
          agents.some((a) => /grpc-node-js/.test(a)),
          agents.join(' | '),
        ).toBe(true);
        expect(
          agents.some((a) => !/grpc-node-js/.test(a)),
          agents.join(' | '),
        ).toBe(true);
        expect(proxy.refused).toBe(0);

        // The proxy does check: a wrong key is refused, and the command says it failed.
        const wrong = await ohbackup(['sessions', '--json'], { ...tool, TEMPORAL_API_KEY: 'not-the-key' });
        expect(wrong.code).not.toBe(0);
        expect(proxy.refused).toBeGreaterThan(0);
      } finally {
        await worker.kill('SIGTERM');
        await proxy.stop();
      }
    },
  );
});
