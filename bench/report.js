// The bench's result: one row per figure (its anchor, ratio, target, PASS/MISS),
// printed as a table and written as JSON.

export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export const secs = (ms) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : '—');
export const mib = (bytes) => (Number.isFinite(bytes) ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : '—');
export const perSec = (r) => (Number.isFinite(r) ? `${r.toFixed(r < 10 ? 3 : 1)}/s` : '—');

/**
 * A figure compared with an anchor: `ratio = value / anchor`, PASS when `ratio ≤ max`
 * (or, with `within`, when |ratio − 1| ≤ within); with neither, shown for comparison only.
 */
export function row({ measure, value, show, anchorName, anchor, showAnchor = show, max, within, target, na, context }) {
  if (na) return { measure, value: null, display: na, anchor: anchorName ?? null, anchorValue: null, ratio: null, target, result: 'n/a' };
  const hasAnchor = anchor !== undefined;
  const ratio = hasAnchor ? value / anchor : undefined;
  const x = hasAnchor ? ratio : value;
  const ok = within !== undefined ? Math.abs(x - 1) <= within : x <= max;
  return {
    measure,
    value,
    display: show(value),
    anchor: hasAnchor ? `${anchorName} ${showAnchor(anchor)}` : '—',
    anchorValue: hasAnchor ? anchor : null,
    ratio: hasAnchor ? ratio : null,
    target,
    result: max === undefined && within === undefined ? '' : Number.isFinite(x) ? (ok ? 'PASS' : 'MISS') : 'MISS',
    // Shown beside the target, never judged: e.g. the durable anchor of a restore.
    ...(context && { context }),
  };
}

/** A figure shown for reference only (an anchor's own value). */
export function info({ measure, value, show, note = '' }) {
  return { measure, value, display: show(value), anchor: '—', anchorValue: null, ratio: null, target: note, result: '' };
}

/** A figure whose step failed: the error instead of a value. */
export function failedRow({ measure, error, target }) {
  return { measure, value: null, display: 'failed (below)', anchor: '—', anchorValue: null, ratio: null, target, result: 'FAIL', error };
}

export function skipped({ measure, why, target = '' }) {
  return { measure, value: null, display: why, anchor: '—', anchorValue: null, ratio: null, target, result: 'skipped' };
}

/** The scripts' plain table: columns padded to their widest cell, `right` ones aligned right. */
export function formatTable(header, rows, right = []) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const cells = (r) => r.map((c, i) => (right.includes(i) ? String(c ?? '').padStart(widths[i]) : String(c ?? '').padEnd(widths[i])));
  return [header, widths.map((w) => '-'.repeat(w)), ...rows].map((r) => cells(r).join('  ').trimEnd()).join('\n');
}

/** The table; a `context` column after the result when some row has context. */
export function formatRows(rows) {
  const ratio = (r) => (r.ratio === null || r.ratio === undefined ? '—' : r.ratio >= 10 ? `${r.ratio.toFixed(1)}×` : `${r.ratio.toFixed(3)}×`);
  const withContext = rows.some((r) => r.context);
  return formatTable(
    ['measure', 'value', 'anchor', 'ratio', 'target', 'result', ...(withContext ? ['context'] : [])],
    rows.map((r) => [r.measure, r.display, r.anchor, ratio(r), r.target, r.result, ...(withContext ? [r.context ?? ''] : [])]),
    [1, 3],
  );
}
