/** Reading the `infos` strings of appendBundles (api.md §8). */

/**
 * `app_mapping_relation` in a broadcast info: `source` bundle's data goes into
 * bundle `target`. Accepts the detail list at the info's top level or inside
 * its `details`, as tools write both.
 */
export function appMappings(infos: string[]): Map<string, string> {
  const map = new Map<string, string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!node || typeof node !== 'object') return;
    const o = node as Record<string, unknown>;
    if (o.type === 'app_mapping_relation' && Array.isArray(o.detail)) {
      for (const d of o.detail as Array<{ source?: unknown; target?: unknown }>) {
        if (typeof d?.source === 'string' && typeof d?.target === 'string') map.set(d.source, d.target);
      }
    }
    for (const v of Object.values(o)) if (v && typeof v === 'object') visit(v);
  };
  for (const info of infos) {
    try {
      visit(JSON.parse(info));
    } catch {
      // validated as JSON by the caller
    }
  }
  return map;
}
