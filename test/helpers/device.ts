/** Small purpose-made bundles for tests (the sample device covers the realistic shapes). */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { HookName } from '../../common/device.js';

export interface TestBundle {
  name: string;
  /** Relative path → contents. */
  files?: Record<string, string | Buffer>;
  hooks?: Partial<Record<HookName, string>>;
  config?: Record<string, unknown>;
}

export async function writeBundle(dataRoot: string, b: TestBundle): Promise<string> {
  const root = path.join(dataRoot, b.name);
  await mkdir(path.join(root, 'data'), { recursive: true });
  await mkdir(path.join(root, 'backup', 'backup'), { recursive: true });
  await mkdir(path.join(root, 'backup', 'restore'), { recursive: true });
  await writeFile(
    path.join(root, 'bundle.json'),
    JSON.stringify({ name: b.name, versionCode: 1, versionName: '1.0', ...(b.hooks ? { extension: b.hooks } : {}) }),
  );
  await writeFile(path.join(root, 'backup_config.json'), JSON.stringify({ allowToBackupRestore: true, ...b.config }));
  for (const [rel, content] of Object.entries(b.files ?? { 'a.txt': 'a' })) {
    await mkdir(path.dirname(path.join(root, 'data', rel)), { recursive: true });
    await writeFile(path.join(root, 'data', rel), content);
  }
  return root;
}

/** `count` files over the 2 MiB line, so each is handed over on its own. */
export function bigFiles(count: number, prefix = 'big'): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (let i = 0; i < count; i++) out[`${prefix}${i}.bin`] = Buffer.alloc(2 * 1024 * 1024 + 1, i + 1);
  return out;
}
