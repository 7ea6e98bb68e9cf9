/**
 * Reading the `infos` strings of appendBundles (api.md §8). An info is opaque:
 * the bundle's hooks get it as given. The service reads only what it can:
 * `//` and `/* *\/` comments are dropped, and each top-level JSON value of the
 * string (several may follow one another, with or without commas, as in the
 * reference's own examples) is parsed on its own; one that does not parse is
 * skipped.
 */

/** The JSON values an info string holds, read tolerantly; never throws. */
export function readInfoValues(info: string): unknown[] {
  const values: unknown[] = [];
  let chunk = '';
  let depth = 0;
  let inString = false;
  const flush = () => {
    const text = chunk.trim();
    chunk = '';
    if (!text) return;
    try {
      values.push(JSON.parse(text));
    } catch {
      // Not JSON: left to the hooks, which get the string unchanged.
    }
  };
  for (let i = 0; i < info.length; i++) {
    const c = info[i]!;
    if (inString) {
      chunk += c;
      if (c === '\\' && i + 1 < info.length) chunk += info[++i];
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '/' && info[i + 1] === '/') {
      while (i < info.length && info[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && info[i + 1] === '*') {
      const end = info.indexOf('*/', i + 2);
      i = end < 0 ? info.length : end + 1;
      continue;
    }
    if (depth === 0 && (c === ',' || c === ';')) {
      flush();
      continue;
    }
    chunk += c;
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if ((c === '}' || c === ']') && depth > 0 && --depth === 0) flush();
  }
  flush();
  return values;
}

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
  for (const info of infos) readInfoValues(info).forEach(visit);
  return map;
}
