/** Argument checks for every public call: a failure is a 401 BusinessError with a message naming the argument. */
import { z } from 'zod';
import { BusinessError } from '../common/businessError.js';
import { BundleNameSchema } from '../common/device.js';
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

/** An `infos[i]` string: JSON of the shape api.md §8 gives. */
export const InfoArg = z.string().refine((s) => {
  try {
    const v = JSON.parse(s);
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}, 'each info must be a JSON object string');
export const InfosArg = z.array(InfoArg).optional();

export const TimeoutArg = z.number().int('must be a whole number of ms').min(0).max(14_400_000);
export const SendRateArg = z.number().int('must be a whole number').min(0);

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

export const ExtInfoArg = z.string().max(1024 * 1024, 'extInfo is at most 1 MiB');

/** IncrementalBackupTime[]: which bundles, and since when (epoch seconds; 0 = everything). */
export const DataListArg = z
  .array(z.object({ bundleName: BundleNameSchema, lastIncrementalTime: z.number().finite().nonnegative() }))
  .max(10_000);
