/**
 * Repositories through the command line (dist/cli/main.js as a child
 * process), a real worker process, real restic, a local repository and an
 * S3 one served by versitygw: repo init, backups (a full, then a full that
 * keeps manifests and two increments), snapshots, restores of one bundle and
 * of all onto empty roots, check --read-data, forget --keep-last 1 --prune
 * keeping the chain, a tampered pack, the CLI killed while storing. No
 * workflow history of the run holds the password.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSampleDevice, type SampleDeviceSummary } from '../../engine/sampleDevice.js';
import { findRestic } from '../../engine/repository/index.js';
import type { JsonCommand } from '../../cli/output/schemas.js';
import { expectStartAndTotals, jsonSummary } from '../helpers/cliJson.js';
import { compareRestoredBundle } from '../helpers/compareTrees.js';
import { temporalAddress, testClient, uniqueTaskQueue } from '../helpers/temporal.js';
import { startVersitygw, type S3Gateway } from '../helpers/versitygw.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/workerProcess.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const started = new Date();

let root: string;
let passwordFile: string;
let gateway: S3Gateway | undefined;
let unavailable: string | undefined;
let device: SampleDeviceSummary;
let worker: WorkerProcess | undefined;
let baseEnv: Record<string, string>;
let n = 0;

type Backend = 'local' | 's3';
interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** The command as its JSON summary names it, e.g. "repo init", "snapshots". */
  command: JsonCommand;
}

function ohbackup(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...baseEnv, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({
        code: err ? ((err as { code?: number }).code ?? 1) : 0,
        stdout,
        stderr,
        command: (args[0] === 'repo' ? `repo ${args[1]}` : args[0]) as JsonCommand,
      }),
    );
  });
}

/** The summary line of a successful --json run, every line checked against its schema. */
function json<T>(r: Run): T {
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const summary = jsonSummary<T>(r.stdout, r.command);
  // A backup or restore names its session and UI link on stderr as it starts, off a terminal too.
  const { sessionId } = summary as { sessionId?: string };
  if (sessionId) expect(expectStartAndTotals(r, { json: true })).toContain(sessionId);
  return summary;
}

const snapshotsOf = (r: Run): Snapshot[] => json<{ snapshots: Snapshot[] }>(r).snapshots;

const backupable = () => device.bundles.filter((b) => b.backupable).map((b) => b.name);

/** A fresh repository on the back end, and the environment restic needs for it. */
function repoOf(backend: Backend, name: string): { repo: string; env: Record<string, string> } {
  if (backend === 'local') return { repo: path.join(root, 'repos', `${name}-${n++}`), env: {} };
  return {
    repo: gateway!.repository(`${name}-${n++}`),
    env: { AWS_ACCESS_KEY_ID: gateway!.accessKey, AWS_SECRET_ACCESS_KEY: gateway!.secretKey },
  };
}

/** Rewrites a few small files of a bundle (an increment then has something to hand over). */
async function touchDevice(tag: string): Promise<void> {
  const dir = path.join(device.dir, 'com.example.docs', 'data');
  const files = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
  await appendFile(path.join(files[0]!.parentPath, files[0]!.name), `changed ${tag}\n`);
  await writeFile(path.join(dir, `new-${tag}.txt`), randomBytes(2048).toString('hex'));
}

interface Snapshot {
  id: string;
  shortId: string;
  kind: string;
  device: string;
  bundles: string[];
  base: { id: string; sessionId: string } | null;
  size: number | null;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-repocli-'));
  passwordFile = path.join(root, 'password');
  await writeFile(passwordFile, PASSWORD, { mode: 0o600 });
  try {
    await findRestic();
    gateway = await startVersitygw(path.join(root, 's3'));
  } catch (err) {
    unavailable = (err as Error).message;
    console.warn(`repository CLI tests skipped: ${unavailable}`);
    return;
  }
  device = await writeSampleDevice(path.join(root, 'device'), { scale: 0.1, seed: 21 });
  const taskQueue = uniqueTaskQueue('repocli');
  worker = await startWorkerProcess({ taskQueue, dataRoot: device.dir, stateDir: path.join(root, 'worker-state'), prebuiltWorkflows: true });
  baseEnv = {
    TEMPORAL_ADDRESS: temporalAddress(),
    OHBACKUP_TASK_QUEUE: taskQueue,
    OHBACKUP_STATE_DIR: path.join(root, 'state'),
    RESTIC_PASSWORD_FILE: passwordFile,
  };
}, 600_000);

afterAll(async () => {
  await worker?.kill();
  await gateway?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe.each<Backend>(['local', 's3'])('the command line on a %s repository', (backend) => {
  it('repo init, backups, snapshots, restore of one bundle and of all, check --read-data, forget --keep-last 1 --prune keeps the chain', async (ctx) => {
    if (unavailable) return ctx.skip();
    const { repo, env } = repoOf(backend, 'cli');
    const init = json<{ repository: string }>(await ohbackup(['repo', 'init', '--repo', repo, '--json'], env));
    expect(init.repository).toBe(repo);
    expect((await ohbackup(['repo', 'init', '--repo', repo], env)).code).toBe(1);

    // A plain full backup (no chain), then a full one that keeps manifests and two increments of it.
    const plain = json<{ snapshot: Snapshot; store: { dataAdded: number; bytesProcessed: number } }>(
      await ohbackup(['backup', '--repo', repo, 'com.example.docs', 'com.example.notes', '--json'], env),
    );
    expect(plain.store.dataAdded).toBeGreaterThan(0);
    const full = json<{ snapshot: Snapshot }>(await ohbackup(['backup', '--repo', repo, '--incremental', '--json'], env));
    await touchDevice(`${backend}-1`);
    const inc1 = json<{ snapshot: Snapshot; baseSnapshot: string }>(await ohbackup(['backup', '--repo', repo, '--base', 'latest', '--json'], env));
    expect(inc1.baseSnapshot).toBe(full.snapshot.id);
    await touchDevice(`${backend}-2`);
    const inc2 = json<{ snapshot: Snapshot; baseSnapshot: string }>(await ohbackup(['backup', '--repo', repo, '--base', inc1.snapshot.shortId, '--json'], env));
    expect(inc2.baseSnapshot).toBe(inc1.snapshot.id);

    const list = snapshotsOf(await ohbackup(['snapshots', '--repo', repo, '--json'], env));
    expect(list.map((s) => s.id)).toEqual([plain.snapshot.id, full.snapshot.id, inc1.snapshot.id, inc2.snapshot.id]);
    expect(list.map((s) => s.kind)).toEqual(['backup', 'incremental', 'incremental', 'incremental']);
    expect(list.every((s) => s.device === 'default')).toBe(true);
    expect(list[3]!.base?.id).toBe(inc1.snapshot.id);
    expect(list[0]!.bundles.sort()).toEqual(['com.example.docs', 'com.example.notes']);
    expect(list.slice(1).every((s) => s.bundles.sort().join() === backupable().sort().join())).toBe(true);
    const gallery = snapshotsOf(await ohbackup(['snapshots', '--repo', repo, '--bundle', 'com.example.gallery', '--json'], env));
    expect(gallery.map((s) => s.id)).toEqual([full.snapshot.id, inc1.snapshot.id, inc2.snapshot.id]);
    expect(snapshotsOf(await ohbackup(['snapshots', '--repo', repo, '--device', 'other', '--json'], env))).toEqual([]);

    const diff = json<{ bundles: Array<{ bundleName: string; new: string[]; changed: string[] }> }>(
      await ohbackup(['diff', '--repo', repo, full.snapshot.id, inc2.snapshot.id, '--json'], env),
    );
    const docs = diff.bundles.find((b) => b.bundleName === 'com.example.docs')!;
    expect(docs.new.sort()).toEqual([`new-${backend}-1.txt`, `new-${backend}-2.txt`]);
    expect(docs.changed.length).toBe(1);

    // One bundle, then all, each onto an empty root, byte for byte the device as it is now (= inc2).
    const one = path.join(root, `one-${backend}`);
    const r1 = json<{ bundles: Array<{ bundleName: string; state: string }>; snapshots: Snapshot[] }>(
      await ohbackup(['restore', '--repo', repo, '--from', 'latest', '--to', one, 'com.example.docs', '--json'], env),
    );
    expect(r1.bundles.map((b) => [b.bundleName, b.state])).toEqual([['com.example.docs', 'done']]);
    expect(r1.snapshots.map((s) => s.id)).toEqual([full.snapshot.id, inc1.snapshot.id, inc2.snapshot.id]);
    expect(await compareRestoredBundle(device.dir, one, 'com.example.docs')).toEqual([]);
    expect(await readdir(one)).toEqual(['com.example.docs']);
    const all = path.join(root, `all-${backend}`);
    const r2 = json<{ bundles: Array<{ bundleName: string; state: string }> }>(
      await ohbackup(['restore', '--repo', repo, '--from', inc2.snapshot.id, '--to', all, '--json'], env),
    );
    expect(r2.bundles.map((b) => b.state)).toEqual(backupable().map(() => 'done'));
    for (const b of backupable()) expect(await compareRestoredBundle(device.dir, all, b)).toEqual([]);

    const check = await ohbackup(['check', '--repo', repo, '--read-data'], env);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/Clean: .* 4 snapshots checked/);

    // keep-last 1 keeps inc2 and, for it, inc1 and the full one; only the plain full goes.
    const dry = json<{ decisions: Array<{ snapshot: Snapshot; keep: boolean; reasons: string[] }>; forgotten: string[] }>(
      await ohbackup(['forget', '--repo', repo, '--keep-last', '1', '--dry-run', '--json'], env),
    );
    expect(dry.forgotten).toEqual([plain.snapshot.id]);
    expect(dry.decisions.find((d) => d.snapshot.id === full.snapshot.id)?.reasons.join()).toMatch(/base of/);
    const forget = json<{ forgotten: string[]; pruned: boolean }>(await ohbackup(['forget', '--repo', repo, '--keep-last', '1', '--prune', '--json'], env));
    expect(forget).toMatchObject({ forgotten: [plain.snapshot.id], pruned: true });
    expect(snapshotsOf(await ohbackup(['snapshots', '--repo', repo, '--json'], env)).map((s) => s.id)).toEqual([
      full.snapshot.id,
      inc1.snapshot.id,
      inc2.snapshot.id,
    ]);
    const after = path.join(root, `after-${backend}`);
    const r3 = json<{ bundles: Array<{ state: string }> }>(await ohbackup(['restore', '--repo', repo, '--from', 'latest', '--to', after, '--json'], env));
    expect(r3.bundles.map((b) => b.state)).toEqual(backupable().map(() => 'done'));
    for (const b of backupable()) expect(await compareRestoredBundle(device.dir, after, b)).toEqual([]);
    expect((await ohbackup(['check', '--repo', repo, '--read-data'], env)).code).toBe(0);
  }, 900_000);
});

/** The largest file under a local repository's data/ (a pack). */
async function largestPack(repo: string): Promise<string> {
  let best = { file: '', size: -1 };
  for (const sub of await readdir(path.join(repo, 'data'))) {
    for (const f of await readdir(path.join(repo, 'data', sub))) {
      const p = path.join(repo, 'data', sub, f);
      const st = await stat(p);
      if (st.size > best.size) best = { file: p, size: st.size };
    }
  }
  return best.file;
}

describe('the command line on a local repository, damaged and interrupted', () => {
  it('a tampered pack: check --read-data exits 1 naming the snapshot and bundle', async (ctx) => {
    if (unavailable) return ctx.skip();
    const { repo } = repoOf('local', 'tamper');
    expect((await ohbackup(['repo', 'init', '--repo', repo])).code).toBe(0);
    const made = json<{ snapshot: Snapshot }>(await ohbackup(['backup', '--repo', repo, 'com.example.gallery', '--json']));
    expect((await ohbackup(['check', '--repo', repo, '--read-data'])).code).toBe(0);
    const pack = await largestPack(repo);
    const fh = await open(pack, 'r+');
    const { size } = await fh.stat();
    await fh.write(randomBytes(64), 0, 64, Math.floor(size / 2));
    await fh.close();
    const check = await ohbackup(['check', '--repo', repo, '--read-data', '--json']);
    expect(check.code, check.stderr).toBe(1);
    const r = jsonSummary<{ ok: boolean; damaged: Array<{ snapshot: string; bundleName: string }> }>(check.stdout, 'check');
    expect(r.ok).toBe(false);
    expect(r.damaged.length).toBeGreaterThan(0);
    expect(
      r.damaged.every((d) => d.snapshot === made.snapshot.id && d.bundleName === 'com.example.gallery'),
      JSON.stringify(r.damaged),
    ).toBe(true);
    const text = await ohbackup(['check', '--repo', repo, '--read-data']);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain(`snapshot ${made.snapshot.shortId} bundle com.example.gallery`);
  }, 600_000);

  it('the CLI (and its restic) killed while a snapshot is being written: check is clean and the next backup succeeds', async (ctx) => {
    if (unavailable) return ctx.skip();
    const { repo } = repoOf('local', 'killed');
    expect((await ohbackup(['repo', 'init', '--repo', repo])).code).toBe(0);
    // Its own process group, so the kill takes restic with it, as a crash of the tool's host would.
    const child = spawn(process.execPath, [CLI, 'backup', '--repo', repo], {
      env: { ...process.env, ...baseEnv },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_c, s) => resolve(s)));
    let ended = false;
    void exited.then(() => (ended = true));
    // The moment restic's `backup` runs under the CLI: the snapshot is being written (a small store takes under a
    // second, so the CLI's progress lines may not come before it ends).
    const storing = (): boolean =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .some((pid) => {
          try {
            const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
            const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
            return ppid === child.pid && argv.some((a) => /restic$/.test(a)) && argv.includes('backup');
          } catch {
            return false; // gone meanwhile
          }
        });
    while (!storing()) {
      if (ended) throw new Error(`the backup ended before storing began:\n${err}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    process.kill(-child.pid!, 'SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const check = await ohbackup(['check', '--repo', repo, '--read-data']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const next = json<{ snapshot: Snapshot; outcome: string }>(await ohbackup(['backup', '--repo', repo, '--json']));
    expect(next.outcome).toBe('done');
    expect(snapshotsOf(await ohbackup(['snapshots', '--repo', repo, '--json'])).map((s) => s.id)).toContain(next.snapshot.id);
    expect((await ohbackup(['check', '--repo', repo])).code).toBe(0);
    // In words, into and out of a repository: each run's totals line with elapsed time and throughput.
    const words = await ohbackup(['backup', '--repo', repo, 'com.example.docs']);
    expect(words.code, words.stderr).toBe(0);
    expectStartAndTotals(words, { json: false });
    const back = await ohbackup(['restore', '--repo', repo, '--from', 'latest', '--to', path.join(path.dirname(repo), 'in-words'), 'com.example.docs']);
    expect(back.code, back.stderr).toBe(0);
    expectStartAndTotals(back, { json: false });
  }, 600_000);

  it('never puts the password into a workflow history', async (ctx) => {
    if (unavailable) return ctx.skip();
    const client = await testClient();
    let scanned = 0;
    for await (const wf of client.workflow.list({ query: `StartTime >= "${started.toISOString()}"` })) {
      const history = JSON.stringify(await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory());
      scanned++;
      expect(history).not.toContain(PASSWORD);
      expect(history).not.toContain(gateway!.secretKey);
    }
    expect(scanned).toBeGreaterThan(5);
  }, 120_000);
});
