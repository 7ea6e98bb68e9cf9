import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SKIP = new Set(['node_modules', 'dist', 'coverage', '.git', '.ohbackup']);

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (SKIP.has(e.name)) return [];
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return markdownFiles(p);
    return e.name.endsWith('.md') ? [p] : [];
  });
}

/** The text outside fenced code blocks and inline code, where links and headings count. */
function prose(text: string): string[] {
  let fenced = false;
  return text.split('\n').map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return '';
    }
    return fenced ? '' : line.replace(/`[^`]*`/g, '``');
  });
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, … */
function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const text = m[1]!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(text) ?? 0;
    seen.set(text, n + 1);
    out.add(n === 0 ? text : `${text}-${n}`);
  }
  return out;
}

/** Every relative link of every markdown file under root whose file or #anchor does not exist. */
export function brokenLinks(root: string): string[] {
  const broken: string[] = [];
  for (const file of markdownFiles(root)) {
    prose(readFileSync(file, 'utf8')).forEach((line, i) => {
      for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        const link = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto:
        const [target, anchor] = link.split('#') as [string, string | undefined];
        const where = `${path.relative(root, file)}:${i + 1}: ${link}`;
        const resolved = target === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(target));
        if (!existsSync(resolved)) {
          broken.push(`${where} (no such file)`);
          continue;
        }
        if (anchor === undefined || anchor === '') continue;
        if (statSync(resolved).isDirectory() || !resolved.endsWith('.md')) broken.push(`${where} (an anchor into a file that is not markdown)`);
        else if (!anchors(resolved).has(anchor)) broken.push(`${where} (no heading #${anchor})`);
      }
    });
  }
  return broken;
}

describe('documentation links', () => {
  it('every relative link in every markdown file names a file that exists, and a heading that exists', () => {
    expect(markdownFiles(ROOT).length).toBeGreaterThan(5);
    expect(brokenLinks(ROOT)).toEqual([]);
  });

  it('the check finds a missing file, a missing heading and an anchor into a non-markdown file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'docs-links-'));
    try {
      writeFileSync(path.join(dir, 'a.md'), '# Title\n\n## The `fd` cap, again\n\nSee [b](b.md#the-fd-cap-again), [self](#title).\n');
      writeFileSync(
        path.join(dir, 'b.md'),
        [
          '## The fd cap, again',
          '[ok](a.md#the-fd-cap-again) [gone](missing.md) [bad](a.md#nope) [code](x.ts#L1) [web](https://example.com/#x)',
          '`[in code](missing.md)`',
          '```',
          '[fenced](missing.md)',
          '```',
        ].join('\n'),
      );
      writeFileSync(path.join(dir, 'x.ts'), '');
      expect(brokenLinks(dir)).toEqual([
        'b.md:2: missing.md (no such file)',
        'b.md:2: a.md#nope (no heading #nope)',
        'b.md:2: x.ts#L1 (an anchor into a file that is not markdown)',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
