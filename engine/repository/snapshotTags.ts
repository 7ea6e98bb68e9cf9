/**
 * The tags and hostname that say what a snapshot is, in restic's own terms so
 * that `restic snapshots` shows it: hostname = the device, and the tags
 * `ohbackup`, `device=<id>`, `session=<id>`, `kind=backup|incremental`,
 * `outcome=done|partial`, one `bundle=<name>` per stored bundle and, for an
 * increment, `base=<snapshot ID>` and `base-session=<session ID>`.
 * Only snapshots tagged `ohbackup` are ever read, changed or forgotten.
 */
import type { SnapshotMeta, SnapshotView } from '../../common/snapshot.js';

export const OHBACKUP_TAG = 'ohbackup';

export type { SnapshotMeta } from '../../common/snapshot.js';

/** A snapshot of ohbackup's, as `snapshots()` lists it: what a device run reports, and restic's raw tags. */
export interface SnapshotInfo extends SnapshotView {
  tags: string[];
}

/** Tags may not contain commas (restic splits --tag values on them); nor may they be empty. */
function checkValue(what: string, value: string): string {
  if (!value || /[,\s]/.test(value)) throw new TypeError(`${what} "${value}" cannot be a snapshot tag (empty, or has a comma or a space)`);
  return value;
}

export function snapshotTags(m: SnapshotMeta): string[] {
  const tags = [
    OHBACKUP_TAG,
    `device=${checkValue('device', m.device)}`,
    `session=${checkValue('session', m.sessionId)}`,
    `kind=${m.kind}`,
    `outcome=${m.partial ? 'partial' : 'done'}`,
    ...m.bundles.map((b) => `bundle=${checkValue('bundle', b)}`),
  ];
  if (m.base) tags.push(`base=${checkValue('base snapshot', m.base.id)}`, `base-session=${checkValue('base session', m.base.sessionId)}`);
  return tags;
}

interface ResticSnapshotJson {
  id?: string;
  short_id?: string;
  time?: string;
  hostname?: string;
  tags?: string[];
  summary?: { total_bytes_processed?: number; data_added?: number };
}

/** A snapshot from `restic snapshots --json` as ohbackup's, or undefined when it is not one. */
export function parseSnapshot(json: unknown): SnapshotInfo | undefined {
  const s = json as ResticSnapshotJson;
  const tags = Array.isArray(s?.tags) ? s.tags : [];
  if (!tags.includes(OHBACKUP_TAG) || typeof s.id !== 'string') return undefined;
  const one = (key: string) => tags.find((t) => t.startsWith(`${key}=`))?.slice(key.length + 1);
  const sessionId = one('session');
  const device = one('device') ?? s.hostname;
  if (!sessionId || !device) return undefined;
  const kind = one('kind') === 'incremental' ? 'incremental' : 'backup';
  const baseId = one('base');
  const baseSession = one('base-session');
  return {
    id: s.id,
    shortId: s.short_id ?? s.id.slice(0, 8),
    time: s.time ?? '',
    device,
    sessionId,
    kind,
    bundles: tags.filter((t) => t.startsWith('bundle=')).map((t) => t.slice('bundle='.length)),
    partial: one('outcome') === 'partial',
    ...(baseSession ? { base: { id: baseId ?? '', sessionId: baseSession } } : {}),
    ...(typeof s.summary?.total_bytes_processed === 'number' ? { size: s.summary.total_bytes_processed } : {}),
    ...(typeof s.summary?.data_added === 'number' ? { dataAdded: s.summary.data_added } : {}),
    tags,
  };
}
