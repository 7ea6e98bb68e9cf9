/**
 * Device-side runs on the command line (client/runs/deviceRuns.ts):
 * `backup|restore --device D --repo NAME` (through runDeviceCommand),
 * `ohbackup follow ID`, `ohbackup devices`, and the repository commands
 * answered by a device (`snapshots|check|forget|diff --on-device`).
 */
import type { Command } from 'commander';
import { deviceTaskQueue } from '../../common/deviceQueue.js';
import type { DeviceQueryKind, DeviceRunProgress, DeviceRunRequest } from '../../common/deviceRun.js';
import { describeCode } from '../../common/errors.js';
import type { BundleOutcome } from '../../common/session.js';
import { deviceQuery, followDeviceRun, listDevices, startDeviceRun, type FollowedDeviceRun, type StartedDeviceRun } from '../../client/runs/deviceRuns.js';
import { connect } from '../../client/runs/setup.js';
import { SessionIdArg } from '../../client/validate.js';
import type { ProgressColumns, ProgressEvent } from '../output/progress.js';
import { formatBytes, formatOutcomes, formatTable } from '../output/results.js';
import { backupColumns, restoreColumns } from '../output/columns.js';
import { printJson, printJsonError } from '../output/json.js';
import { jsonDeviceRun, jsonDeviceRunStarted, jsonDevices } from '../output/schemas.js';
import { EXIT, runCommand, usageError } from '../shared.js';
import { closeConnection } from '../../client/connection.js';

type AnyEvent = ProgressEvent & Record<string, unknown>;

/**
 * Turns the run's heartbeats into the events of a local run, so the same
 * bars show: a new session starts them; a bundle begins, grows and ends.
 */
function progressEvents(kind: DeviceRunRequest['kind'], device: string, emit: (e: AnyEvent) => void): (p: DeviceRunProgress) => void {
  let session: string | undefined;
  let seen = new Map<string, { state: string; files: number }>();
  let storing = -1;
  return (p) => {
    if (p.sessionId && p.sessionId !== session) {
      session = p.sessionId;
      seen = new Map();
      emit({ type: 'start', sessionId: p.sessionId, bundles: p.bundles.map((b) => b.name), kind, taskQueue: deviceTaskQueue(device), device });
    }
    for (const b of p.bundles) {
      const was = seen.get(b.name) ?? { state: 'pending', files: 0 };
      if (was.state === 'pending' && b.state !== 'pending')
        emit({ type: 'begin', bundleName: b.name, total: b.total ?? 1, ...(b.total !== undefined ? { estimatedBytes: b.total } : {}) });
      if (b.files !== was.files) emit({ type: 'file', bundleName: b.name, files: b.files, bytes: b.bytes, total: b.total ?? 1 });
      if (b.state !== was.state && !['pending', 'running'].includes(b.state)) {
        const outcome: BundleOutcome = { bundleName: b.name, state: b.state as BundleOutcome['state'], files: b.files, bytes: b.bytes };
        if (b.code !== undefined) outcome.error = { code: b.code, message: describeCode(b.code) };
        emit({ type: 'end', outcome });
      }
      seen.set(b.name, { state: b.state, files: b.files });
    }
    // Storing: a line per tenth of the way (restic's own percent), not a flood.
    if (p.phase === 'storing' && p.percent !== undefined && Math.floor(p.percent / 10) > storing) {
      storing = Math.floor(p.percent / 10);
      emit({ type: 'notice', message: `storing in the repository: ${p.percent}%` });
    }
  };
}

export function formatDeviceRun(r: FollowedDeviceRun): string {
  const lines: string[] = [];
  // A query followed here (`ohbackup follow`): its answer in words; the command that asked prints it whole.
  if (r.summary) lines.push(r.summary.text);
  else lines.push(formatOutcomes(r.bundles));
  lines.push('');
  if (r.error) lines.push(`Failed: ${r.error.code} ${r.error.message}`);
  if (r.outcome === 'interrupted') lines.push('Interrupted: the run was cancelled and its session released on the device.');
  lines.push(`Device       ${r.device} (repository "${r.repository}")`);
  if (r.snapshot) lines.push(`Snapshot     ${r.snapshot.shortId} (${r.snapshot.kind}${r.baseSnapshot ? `, base ${r.baseSnapshot.shortId}` : ''})`);
  if (r.kind === 'restore' && r.snapshots?.length) lines.push(`Restored     ${r.snapshots.map((s) => s.shortId).join(' → ')}`);
  if (r.store) lines.push(`Stored       ${formatBytes(r.store.dataAdded)} added of ${formatBytes(r.store.totalBytes)}`);
  if (r.sessionId) lines.push(`Session      ${r.sessionId}`);
  if (r.attempt > 1) lines.push(`Attempt      ${r.attempt} (an earlier attempt's worker was lost)`);
  lines.push(`Run          ${r.workflowId}`, `Temporal UI  ${r.uiUrl}`);
  return lines.join('\n');
}

type DetachedRun = StartedDeviceRun & { outcome: 'done' };

/** Starts a device run and follows it (or, detached, says how to follow it): progress, result, exit code as a local run. */
export async function runDeviceCommand(cmd: Command, request: DeviceRunRequest, opts: { json?: boolean; detach?: boolean }): Promise<void> {
  const columns = (request.kind === 'restore' ? restoreColumns : backupColumns) as unknown as ProgressColumns<AnyEvent>;
  if (opts.detach) {
    await runCommand<AnyEvent, DetachedRun>(
      cmd,
      {
        progress: columns,
        json: opts.json,
        jsonKind: 'device run started',
        toJson: jsonDeviceRunStarted,
        format: (s) =>
          `Run          ${s.workflowId}\nTemporal UI  ${s.uiUrl}\n${s.waitingForWorker ? `No worker of device ${s.device} polls now: the run waits for one.\n` : ''}Follow it:   ohbackup follow ${s.workflowId}`,
        failure: 'Starting the run failed',
      },
      async () => ({ ...(await startDeviceRun(request)), outcome: 'done' }),
    );
    return;
  }
  await runCommand<AnyEvent, FollowedDeviceRun>(
    cmd,
    { progress: columns, json: opts.json, jsonKind: 'device run', toJson: jsonDeviceRun, format: formatDeviceRun, failure: `The ${request.kind} failed` },
    async ({ onProgress, signal }) => {
      const started = await startDeviceRun(request);
      onProgress({ type: 'notice', message: `Run ${started.workflowId} on device ${request.device} (${started.uiUrl})` });
      return followDeviceRun(started.workflowId, {
        signal,
        onProgress: progressEvents(request.kind, request.device, onProgress),
        onNotice: (message) => onProgress({ type: 'notice', message }),
      });
    },
  );
}

export function registerDeviceRuns(program: Command): void {
  program
    .command('follow')
    .summary('follow a device run started elsewhere (or detached) to its end')
    .description(
      'Re-attach to a device run (`ohbackup backup|restore --device D --repo NAME`, also one started with --detach or whose command was killed): ' +
        'its progress, then its result and exit code as the command that started it would have given. Ctrl-C cancels the run.',
    )
    .argument('<run-id>', 'the run ID the starting command printed (ohbackup-device-…)')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      `
Exit codes: as the command that started the run (0 done, 3 partial, 1 failed, 130 interrupted: Ctrl-C cancels the run).

Examples:
  $ ohbackup backup --device phone-1 --repo offsite --detach     # prints the run ID
  $ ohbackup follow ohbackup-device-backup-phone-1-1c9e…`,
    )
    .action(async (runId: string, opts: { json?: boolean }, cmd: Command) => {
      if (!SessionIdArg.safeParse(runId).success) usageError(cmd, `"${runId}" is not a run ID.`);
      const kind = /^ohbackup-device-(backup|restore|snapshots|check|forget|diff)-/.exec(runId)?.[1] as DeviceRunRequest['kind'] | undefined;
      const device = runId.replace(/^ohbackup-device-[a-z]+-/, '').replace(/-[0-9a-f-]{36}$/, '');
      const columns = (kind === 'restore' ? restoreColumns : backupColumns) as unknown as ProgressColumns<AnyEvent>;
      await runCommand<AnyEvent, FollowedDeviceRun>(
        cmd,
        { progress: columns, json: opts.json, jsonKind: 'device run', toJson: jsonDeviceRun, format: formatDeviceRun, failure: 'Following the run failed' },
        ({ onProgress, signal }) =>
          followDeviceRun(runId, {
            signal,
            onProgress: progressEvents(kind ?? 'backup', device, onProgress),
            onNotice: (message) => onProgress({ type: 'notice', message }),
          }),
      );
    });

  program
    .command('devices')
    .summary('list the device workers seen on the Temporal service')
    .description(
      'List the devices whose worker (`ohbackup worker --device ID`) has announced itself on this namespace: device ID, task queue, ' +
        'whether a worker polls now and when one was last seen, its ohbackup version, and the repository aliases it has configured (names only).',
    )
    .option('--json', 'print the summary line: devices (device, taskQueue, live, lastSeen, version, repositories, startedAt, identity)')
    .addHelpText(
      'after',
      `
A device is listed once its worker has started (\`ohbackup worker --device ID\`); "live" means some worker polls its task
queue now, and "last seen" is when one last did (the service forgets a silent poller after a few minutes).

Examples:
  $ ohbackup devices
  $ ohbackup devices --json`,
    )
    .action(async (opts: { json?: boolean }) => {
      try {
        const list = await listDevices(await connect());
        if (opts.json) printJson('devices', jsonDevices(list));
        else if (!list.length)
          console.log('No device worker has announced itself on this namespace (start one: `ohbackup worker --device ID --data-root DIR`).');
        else
          console.log(
            formatTable(
              ['device', 'task queue', 'worker', 'last seen', 'version', 'repositories'],
              list.map((d) => [d.device, d.taskQueue, d.live ? 'live' : 'none', d.lastSeen ?? '', d.version ?? '', (d.repositories ?? []).join(',')]),
            ),
          );
        process.exitCode = EXIT.ok;
      } catch (err) {
        if (opts.json) printJsonError({ code: 'ohbackup.failed', message: (err as Error).message }, EXIT.failed);
        else console.error((err as Error).message);
        process.exitCode = EXIT.failed;
      } finally {
        await closeConnection();
      }
    });
}

/** `--on-device` of backup, restore and the repository commands. */
export const ON_DEVICE_HELP =
  "run this on the worker of --device (a device-side run): --repo is then the repository's alias in that worker's environment " +
  '(OHBACKUP_REPOSITORY_<NAME>); this host needs only the Temporal service';
export const DETACH_HELP = 'with --on-device: start the run, print its ID and UI link, and leave it (`ohbackup follow ID` re-attaches)';

/**
 * A repository command with `--on-device`: the worker of `--device` answers
 * it with its own alias of `--repo`; the answer is printed as the command
 * prints a local one (`how`, given the repository's label `"NAME" on DEVICE`),
 * under the command's own JSON kind, exit 1 when `ok` says so.
 */
export async function deviceQueryCommand(
  cmd: Command,
  request: Omit<DeviceRunRequest, 'kind' | 'device' | 'repository'> & { kind: DeviceQueryKind; device?: string; repository?: string },
  how: {
    json?: boolean;
    failure: string;
    toJson: (answer: never, where: string) => Record<string, unknown>;
    format: (answer: never, where: string) => string;
    ok?: (answer: never) => boolean;
  },
): Promise<void> {
  const { device, repository } = request;
  if (!device || repository === undefined) usageError(cmd, '--on-device goes with --device D --repo NAME (the repository by its alias on the device).');
  const where = `"${repository}" on ${device}`;
  type Answered = { outcome: 'done' | 'failed'; answer: never };
  await runCommand<AnyEvent, Answered>(
    cmd,
    {
      progress: backupColumns as unknown as ProgressColumns<AnyEvent>,
      json: how.json,
      jsonKind: request.kind,
      answerOnly: true,
      toJson: (r) => how.toJson(r.answer, where),
      format: (r) => how.format(r.answer, where),
      failure: how.failure,
    },
    async ({ signal, onProgress }) => {
      const answer = (await deviceQuery(
        { ...request, device, repository },
        { signal, onNotice: (message) => onProgress({ type: 'notice', message }) },
      )) as never;
      return { outcome: !how.ok || how.ok(answer) ? 'done' : 'failed', answer };
    },
  );
}
