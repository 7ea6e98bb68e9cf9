/**
 * Chains of snapshots: an increment names its base by the base's session ID
 * (tag `base-session=`), with the base's snapshot ID as a hint (tag `base=`).
 * The session decides: `restic copy` gives every copied snapshot a new ID
 * but keeps its tags, so a chain copied into another repository still
 * resolves there; the ID only breaks a tie between two snapshots of the same
 * session (a session stored twice, or copied in twice).
 */
import { ChainBroken } from './errors.js';
import type { SnapshotInfo } from './snapshotTags.js';

/** The snapshot `s` is an increment of, among `all`; undefined for a snapshot that is no increment. */
export function baseOf(s: SnapshotInfo, all: SnapshotInfo[]): SnapshotInfo | undefined {
  if (!s.base) return undefined;
  const same = all.filter((o) => o.sessionId === s.base!.sessionId && o.device === s.device && o.id !== s.id);
  if (!same.length) {
    throw new ChainBroken(
      `snapshot ${s.shortId} (session ${s.sessionId}) is an increment of session ${s.base.sessionId} (snapshot ${s.base.id.slice(0, 8)}), which is not in the repository: the chain is broken`,
    );
  }
  return same.find((o) => o.id === s.base!.id) ?? same.sort((a, b) => a.time.localeCompare(b.time))[0];
}

/** The chain ending at `s`, root (a full backup) first. */
export function chainOf(s: SnapshotInfo, all: SnapshotInfo[]): SnapshotInfo[] {
  const chain = [s];
  const seen = new Set([s.id]);
  for (let cur = baseOf(s, all); cur; cur = baseOf(cur, all)) {
    if (seen.has(cur.id)) throw new ChainBroken(`the bases of snapshot ${s.shortId} form a loop: ${[...chain, cur].map((c) => c.shortId).join(' → ')}`);
    seen.add(cur.id);
    chain.unshift(cur);
  }
  return chain;
}
