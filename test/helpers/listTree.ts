/** Every path below `dir` (not following links), for "nothing was written elsewhere" checks. */
import { readdir } from 'node:fs/promises';
import path from 'node:path';

export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string) => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.join(d, e.name);
      out.push(p);
      if (e.isDirectory()) await visit(p);
    }
  };
  await visit(dir);
  return out.sort();
}
