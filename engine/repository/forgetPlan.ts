/**
 * Which snapshots a keep policy forgets — restic's own decision, per device
 * (restic's host), widened so that no chain is cut: every base of a kept
 * increment is kept too, with the reason why. A chain is thus kept or
 * forgotten whole; an increment may go while its base stays.
 */
import { baseOf } from './chain.js';
import type { SnapshotInfo } from './snapshotTags.js';

export interface KeepPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  /** restic duration such as "30d" or "1y2m". */
  keepWithin?: string;
}

export interface ForgetDecision {
  snapshot: SnapshotInfo;
  keep: boolean;
  /** restic's matches ("last snapshot", "daily snapshot") or "base of <id>, which is kept". */
  reasons: string[];
}

/** restic forget's flags for a policy; throws when the policy keeps nothing explicitly. */
export function policyArgs(p: KeepPolicy): string[] {
  const args: string[] = [];
  const n = (flag: string, v: number | undefined) => {
    if (v === undefined) return;
    if (!Number.isInteger(v) || v < 0) throw new TypeError(`--${flag} needs a whole number (got ${v})`);
    args.push(`--${flag}`, String(v));
  };
  n('keep-last', p.keepLast);
  n('keep-hourly', p.keepHourly);
  n('keep-daily', p.keepDaily);
  n('keep-weekly', p.keepWeekly);
  n('keep-monthly', p.keepMonthly);
  n('keep-yearly', p.keepYearly);
  if (p.keepWithin !== undefined) {
    if (!/^(\d+[ymdh])+$/.test(p.keepWithin)) throw new TypeError(`keep-within needs a duration like 7d or 1y6m (got ${p.keepWithin})`);
    args.push('--keep-within', p.keepWithin);
  }
  if (!args.length) throw new TypeError('a keep policy needs at least one of keep-last, -hourly, -daily, -weekly, -monthly, -yearly, -within');
  return args;
}

/**
 * The decision for every snapshot restic looked at: `resticKeep` maps a kept
 * snapshot's ID to restic's reasons, `resticRemove` lists the ones restic
 * would forget. `all` is every ohbackup snapshot (to find bases).
 */
export function planForget(all: SnapshotInfo[], resticKeep: Map<string, string[]>, resticRemove: string[]): ForgetDecision[] {
  const byId = new Map(all.map((s) => [s.id, s]));
  const reasons = new Map<string, string[]>();
  for (const [id, why] of resticKeep) reasons.set(id, why.length ? [...why] : ['kept by the policy']);
  const queue = [...resticKeep.keys()];
  while (queue.length) {
    const s = byId.get(queue.shift()!);
    if (!s) continue;
    const base = baseOf(s, all);
    if (!base) continue;
    const why = `base of ${s.shortId}, which is kept`;
    const have = reasons.get(base.id);
    if (have) {
      if (!have.includes(why)) have.push(why);
      continue;
    }
    reasons.set(base.id, [why]);
    queue.push(base.id);
  }
  const decided: ForgetDecision[] = [];
  for (const id of new Set([...resticKeep.keys(), ...resticRemove, ...reasons.keys()])) {
    const snapshot = byId.get(id);
    if (!snapshot) continue;
    const keep = reasons.has(id);
    decided.push({ snapshot, keep, reasons: keep ? reasons.get(id)! : ['not kept by the policy, and no kept increment needs it'] });
  }
  return decided.sort((a, b) => a.snapshot.time.localeCompare(b.snapshot.time));
}
