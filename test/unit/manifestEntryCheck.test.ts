/** The hand check of a manifest entry gives the schema's verdict and data, for every variant of every field. */
import { expect, it } from 'vitest';
import { ManifestEntrySchema, manifestPathProblem, parseManifestEntry } from '../../common/manifest.js';

const SHA = 'ab'.repeat(32);

it('parseManifestEntry agrees with ManifestEntrySchema.safeParse (success, data, and the issues it reports)', () => {
  const good = { path: 'a/b.txt', kind: 'file', mode: 0o644, size: 12, mtimeMs: 1_700_000_000_123.5, sha256: SHA };
  const variants: Record<string, unknown[]> = {
    path: ['a', 'a/b', '', '/abs', 'a//b', './a', 'a/..', 'a\0b', 'ü/日本', 7, null],
    kind: ['file', 'dir', 'link', '', undefined],
    mode: [0, 0o7777, 0o10000, -1, 1.5, '644', Number.MAX_SAFE_INTEGER + 2],
    size: [0, 1, 2 ** 53 - 1, 2 ** 53, -1, 0.5, '1'],
    mtimeMs: [0, -5, 1.25, '1', null],
    sha256: [SHA, '', 'AB'.repeat(32), 'ab'.repeat(31), `${SHA}0`, 5],
  };
  const cases: unknown[] = [good, null, [], 'x', 5, { ...good, extra: true }, { path: 'd', kind: 'dir', mode: 0o755, size: 0, mtimeMs: 1, sha256: '' }];
  for (const [field, values] of Object.entries(variants)) {
    for (const v of values) {
      cases.push({ ...good, [field]: v });
      cases.push({ path: 'd', kind: 'dir', mode: 0o755, size: 0, mtimeMs: 1, sha256: '', [field]: v });
    }
    const { [field]: _dropped, ...without } = good;
    cases.push(without);
  }
  for (const c of cases) {
    const want = ManifestEntrySchema.safeParse(c);
    const got = parseManifestEntry(c);
    expect(got.success, JSON.stringify(c)).toBe(want.success);
    if (want.success) expect(got.data, JSON.stringify(c)).toStrictEqual(want.data);
    else expect(got.error?.issues, JSON.stringify(c)).toEqual(want.error.issues);
  }
});

it('manifestPathProblem gives the verdict and reason of a check segment by segment, for every kind of segment', () => {
  const reference = (p: string): string | undefined => {
    const bad = p.split('/').find((s) => s === '' || s === '.' || s === '..');
    if (p === '' || p.includes('\0') || p.startsWith('/')) return p === '' ? 'empty path' : p.includes('\0') ? 'NUL in path' : 'absolute path';
    return bad === undefined ? undefined : bad === '' ? 'empty path segment' : `'${bad}' segment`;
  };
  const parts = ['a', '.', '..', '...', '.a', 'a.', '..a', '', 'ü', 'a\0'];
  const paths = [''];
  for (const x of parts) for (const y of parts) for (const z of ['', ...parts]) paths.push(x, `${x}/${y}`, `/${x}`, `${x}/${y}/${z}`, `${x}/${y}/`);
  for (const p of paths) expect(manifestPathProblem(p), JSON.stringify(p)).toBe(reference(p));
});
