/**
 * The `infos` strings of the reference document's own examples (not strict
 * JSON: two objects in one string, `//` comments) are accepted by all three
 * sessions and reach the bundle's hooks byte for byte; what parses of them is
 * interpreted (the restore example's app mapping).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../client/index.js';
import { restoreSession } from '../../client/runs/restoreSession.js';
import { BackupSetWriter } from '../../client/sets/writer.js';
import { writeBundle } from '../helpers/device.js';
import { Recorder } from '../helpers/recorder.js';
import { configureTool, uniqueTaskQueue, withWorker } from '../helpers/temporal.js';

// Copied literally from the reference (SessionBackup.appendBundles, and IncrementalBackupSession.appendBundles, which uses the same string).
const BACKUP_INFOS: string[] = [
  `
        {
        "infos": [
            {
                "details": [
                    {
                        "detail": [
                            {
                                "key1": "value1",
                                "key2": "value2"
                            }
                        ]
                    }
                ],
                "type": "unicast",
                "bundleName": "com.example.hiworld"
            }
        ]
    },
    {
        "infos": [
            {
                "details": [
                    {
                        "detail": [
                            {
                                "key1": "value1",
                                "key2": "value2"
                            }
                        ]
                    }
                ],
                "type": "unicast",
                "bundleName": "com.example.myApp"
            }
        ]
    }
      `,
];

// Copied literally from the reference (SessionRestore.appendBundles, "携带扩展参数的调用").
const RESTORE_INFOS: string[] = [
  `
         {
          "infos":[
            {
              "details": [
                {
                  "detail": [
                    {
                      "source": "com.example.hiworld", // 应用旧系统包名
                      "target": "com.example.helloworld" // 应用新系统包名
                    }
                  ],
                  "type": "app_mapping_relation"
                }
              ],
              "type":"broadcast"
            }
          ]
         }
        `,
];

const HIWORLD = 'com.example.hiworld';
const MYAPP = 'com.example.myApp';
const HELLOWORLD = 'com.example.helloworld';

describe("the reference's own infos examples", () => {
  it('are accepted by SessionBackup, IncrementalBackupSession and SessionRestore and reach the hooks unchanged; the mapping is applied', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'ohbackup-infos-'));
    const dataRoot = path.join(root, 'device');
    const got = (what: string) => path.join(root, `got.${what}`);
    // Each hook keeps what it was given on stdin (its info) in a file of the test.
    await writeBundle(dataRoot, { name: HIWORLD, files: { 'notes.txt': 'hi' }, hooks: { onBackup: `cat > '${got('backup.hiworld')}'` } });
    await writeBundle(dataRoot, { name: MYAPP, files: { 'm.txt': 'my' }, hooks: { onBackup: `cat > '${got('backup.myApp')}'` } });
    await writeBundle(dataRoot, { name: HELLOWORLD, files: { 'old.txt': 'replaced' }, hooks: { onRestore: `cat > '${got('restore')}'` } });
    const taskQueue = uniqueTaskQueue('infos');
    configureTool(taskQueue);
    const out = path.join(root, 'set');
    const set = new BackupSetWriter(out);
    await set.init();

    await withWorker({ taskQueue, dataRoot, stateDir: path.join(root, 'state') }, async () => {
      // SessionBackup: infos[i] goes with bundlesToBackup[i]; myApp has none.
      const rec = new Recorder(set);
      const session = new backup.SessionBackup(rec.callbacks);
      await session.appendBundles([HIWORLD, MYAPP], BACKUP_INFOS);
      await rec.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await set.flush();
      const { fd } = await session.getLocalCapabilities();
      await set.writeJson('capabilities.json', JSON.parse(readFileSync(fd, 'utf8')));
      await session.release();
      expect(rec.calls.filter((c) => c.cb === 'onBundleEnd').map((c) => [c.bundleName, c.code])).toEqual(
        expect.arrayContaining([
          [HIWORLD, undefined],
          [MYAPP, undefined],
        ]),
      );
      expect(await readFile(got('backup.hiworld'), 'utf8')).toBe(BACKUP_INFOS[0]);
      expect(await readFile(got('backup.myApp'), 'utf8')).toBe('');
      await rm(got('backup.hiworld'));

      // IncrementalBackupSession: the same literal string.
      const inc = new Recorder();
      const incremental = new backup.IncrementalBackupSession(inc.callbacks);
      await incremental.appendBundles([{ bundleName: HIWORLD, lastIncrementalTime: 0, manifestFd: -1 }], BACKUP_INFOS);
      await inc.until((c) => c.some((x) => x.cb === 'onAllBundlesEnd'));
      await incremental.release();
      expect(inc.calls.find((c) => c.cb === 'onBundleEnd')).toMatchObject({ bundleName: HIWORLD, code: undefined });
      expect(await readFile(got('backup.hiworld'), 'utf8')).toBe(BACKUP_INFOS[0]);

      // SessionRestore: the info with // comments, its app mapping read: hiworld's data goes into helloworld.
      const restored = await restoreSession({ from: out, bundles: [HIWORLD], infos: RESTORE_INFOS, session: { taskQueue } });
      expect(restored.error).toBeUndefined();
      expect(restored.bundles.map((b) => [b.bundleName, b.state])).toEqual([[HIWORLD, 'done']]);
      expect(await readFile(got('restore'), 'utf8')).toBe(RESTORE_INFOS[0]);
      expect(await readFile(path.join(dataRoot, HELLOWORLD, 'data', 'notes.txt'), 'utf8')).toBe('hi');
    });
  });
});
