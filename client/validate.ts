/** Argument checks for every public call: a failure is a 401 BusinessError with a message naming the argument. */
import { z } from 'zod';
import { MAX_TIMEOUT_MS } from '../common/rules.js';
import { BusinessError } from '../common/businessError.js';
import { Client } from '@temporalio/client';
import { BundleNameSchema, SessionIdSchema } from '../common/device.js';
import { DeviceIdSchema } from '../common/deviceQueue.js';
import { ErrorCode } from '../common/errors.js';

/** Parses or throws 401, synchronously, as the reference does for parameter errors. */
export function parseArg<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue && issue.path.length ? `${what}.${issue.path.join('.')}` : what;
  throw new BusinessError(ErrorCode.PARAMETER_ERROR, `Parameter error: ${where}: ${issue?.message ?? 'invalid'}`);
}

export const BundleNameArg = BundleNameSchema;
export const BundleListArg = z.array(BundleNameSchema).min(1, 'name at least one bundle').max(10_000);

/**
 * An `infos[i]` string: any string, handed to the bundle's hooks as given (the
 * reference's own examples are not strict JSON); client/infos.ts reads what it
 * can of it. Its size counts in checkAppendSize.
 */
const InfoArg = z.string({ error: 'each info must be a string' });
export const InfosArg = z.array(InfoArg).optional();

/**
 * What one appendBundles call may carry in all (names, infos, parameters): it
 * travels as one Temporal update and then lives in the session's state, so a
 * bigger one is refused here (401) rather than by the service after the
 * session exists.
 */
const MAX_APPEND_BYTES = 1024 * 1024;

/** Throws 401 when the strings of one appendBundles call exceed MAX_APPEND_BYTES. */
export function checkAppendSize(strings: Array<string | undefined>, what: string): void {
  let bytes = 0;
  for (const s of strings) if (s) bytes += Buffer.byteLength(s);
  if (bytes > MAX_APPEND_BYTES) {
    throw new BusinessError(
      ErrorCode.PARAMETER_ERROR,
      `Parameter error: ${what}: ${bytes} bytes of bundle names, infos and parameters in one call; at most ${MAX_APPEND_BYTES}`,
    );
  }
}

export const TimeoutArg = z.number().int('must be a whole number of ms').min(0).max(MAX_TIMEOUT_MS);
/** Any whole number ≥ 0 (z.int() would refuse whole numbers past 2^53, which are merely > 800 and clamped). */
export const SendRateArg = z.number().min(0).refine(Number.isInteger, 'must be a whole number');

export const CallbacksArg = z.object(
  {
    onFileReady: z.function(),
    onBundleBegin: z.function(),
    onBundleEnd: z.function(),
    onAllBundlesEnd: z.function(),
    onBackupServiceDied: z.function(),
    onResultReport: z.function().optional(),
    onProcess: z.function().optional(),
    onBackupSizeReport: z.function().optional(),
  },
  { error: 'callbacks must be a GeneralCallbacks object' },
);

export const SessionIdArg = SessionIdSchema;

export const SessionOptionsArg = z.object(
  {
    sessionId: SessionIdArg.optional(),
    taskQueue: z.string().min(1).max(1000).optional(),
    maxConcurrentBundles: z.number().int().min(1).max(1000).optional(),
    sendRate: SendRateArg.optional(),
    attachTo: SessionIdArg.optional(),
    cursorFile: z.string().min(1).max(4096).optional(),
    maxOpenFds: z.number().int().min(1).max(1_000_000).optional(),
    fdWaitMs: z.number().int().min(0).max(MAX_TIMEOUT_MS).optional(),
    // At least a second: the tool renews its lease every third of it.
    toolTimeoutMs: z.number().int().min(1000).max(MAX_TIMEOUT_MS).optional(),
    keepPrevious: z.boolean().optional(),
    device: z.union([DeviceIdSchema, z.null()]).optional(),
    target: z.string().min(1).max(4096).optional(),
    // A Temporal Client of the caller's (a scheduled run passes its activity's own).
    client: z.custom<Client>((c) => c instanceof Client, 'options.client must be a Temporal Client').optional(),
  },
  { error: 'options must be a SessionOptions object' },
);

export const ExtInfoArg = z.string().max(1024 * 1024, 'extInfo is at most 1 MiB');

/** IncrementalBackupTime[]: which bundles, and since when (epoch seconds; 0 = everything). */
export const DataListArg = z.array(z.object({ bundleName: BundleNameSchema, lastIncrementalTime: z.number().finite().nonnegative() })).max(10_000);
