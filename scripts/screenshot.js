// `npm run screenshot`: pictures of ohbackup in the Temporal Web UI. Starts a
// dev server with its UI (the project's search attributes registered, as
// `ohbackup dev` does), one worker, and a sample device with two more bundles:
// one that backs up at once and one whose onBackup hook fails. Starts a backup
// session whose sample bundles hand their first file over at 1 file/s and then
// pause (send rate 0), so it stays running with its bundle children; opens the
// session's page and the list of sessions in headless Chromium (Debian's
// `chromium`), waits until they show the running children, the failed one and
// the session's current details, and saves
//   $OHBACKUP_STATE_DIR/screenshots/session.png          (default .ohbackup/): the session and its bundle children, the failed one red
//   $OHBACKUP_STATE_DIR/screenshots/session-details.png  its summary, current details and children's summaries
//   $OHBACKUP_STATE_DIR/screenshots/sessions.png         the sessions, found by OhbackupKind
// Then releases the session, stops the worker, and with no worker left saves
//   $OHBACKUP_STATE_DIR/screenshots/session-closed.png   the closed session: its input (who started it, on what) and result (outcome, bundles)
//   $OHBACKUP_STATE_DIR/screenshots/session-memo.png     its memo: the final table of every bundle
//   $OHBACKUP_STATE_DIR/screenshots/session-closed-details.png  its summary and details; its children Failed / Canceled / Completed
//   $OHBACKUP_STATE_DIR/screenshots/outcomes.png         sessions by OhbackupOutcome = "partial", and failed bundle children
// and stops everything. Without Chromium (and not root to install it), it says
// so and exits 0 without a picture.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeSampleDevice } from '../dist/engine/sampleDevice.js';
import { backup } from '../dist/client/index.js';
import { readSettings } from '../dist/config/env.js';
import { startDevServer } from '../dist/workers/devServer.js';
import { runWorker } from '../dist/workers/runWorker.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const stateRoot = path.resolve(process.env.OHBACKUP_STATE_DIR ?? '.ohbackup');
const shots = path.join(stateRoot, 'screenshots');
const work = path.join(stateRoot, `screenshot-run-${process.pid}`);

if (!ensureChromium()) process.exit(0);
const { chromium } = await import('playwright-core');

await mkdir(shots, { recursive: true });
process.env.OHBACKUP_STATE_DIR = work;
const device = await writeSampleDevice(path.join(work, 'device'), { scale: 1 });
const names = device.bundles.filter((b) => b.backupable).map((b) => b.name);
// One bundle that backs up at once (so the session ends partial) and one whose hook fails (its child workflow fails).
const QUICK = 'com.example.quicknotes';
const BROKEN = 'com.example.broken';
await writeBundle(device.dir, QUICK, { 'notes.txt': 'remember the milk\n' });
await writeBundle(device.dir, BROKEN, { 'a.txt': 'a' }, { onBackup: 'echo "cannot reach the database" >&2; exit 7' });

const server = await startDevServer({ port: 0, uiPort: 0, dbFile: path.join(work, 'temporal.db') }).catch((err) => {
  console.error(err.message);
  process.exit(1);
});
const taskQueue = 'ohbackup-screenshot';
const stopWorker = new AbortController();
let worker;
let browser;
let session;
let page;
let ok = false;
try {
  console.log(`Temporal ${server.address}, Web UI ${server.uiUrl}`);
  await new Promise((resolve, reject) => {
    worker = runWorker({
      settings: { ...readSettings(), taskQueue },
      dataRoot: device.dir,
      address: server.address,
      signal: stopWorker.signal,
      onReady: resolve,
    });
    worker.catch(reject);
  });

  // A backup that keeps running while the pictures are taken: each bundle hands its files over at 1 file/s
  // and, once its first file is out, pauses (send rate 0, a durable wait), so three bundle children stay
  // running and the fourth bundle waits for a free slot, until the session is released at the end.
  backup.configure({ address: server.address, taskQueue });
  const running = new Set();
  const paused = new Set();
  let progressed;
  const enough = new Promise((resolve) => (progressed = resolve));
  const ended = new Map();
  let bothEnded;
  const extrasEnded = new Promise((resolve) => (bothEnded = resolve));
  session = new backup.SessionBackup(
    {
      onBundleBegin(err, name) {
        if (err || name === QUICK || name === BROKEN) return;
        backup.updateSendRate(name, 1);
        running.add(name);
      },
      onFileReady(err, file) {
        if (!err) closeSync(file.fd);
        if (file.bundleName === QUICK || paused.has(file.bundleName)) return;
        backup.updateSendRate(file.bundleName, 0);
        paused.add(file.bundleName);
        if (paused.size >= Math.min(3, names.length)) progressed();
      },
      onBundleEnd(err, name) {
        running.delete(name);
        ended.set(name, err ? 'failed' : 'done');
        if (ended.has(QUICK) && ended.has(BROKEN)) bothEnded();
      },
      // Every bundle ended before three were paused (it should not): take what there is, or say so below.
      onAllBundlesEnd: () => progressed(),
      onBackupServiceDied() {},
    },
    { maxConcurrentBundles: 5, target: 'the screenshot of npm run screenshot' },
  );
  await session.appendBundles([QUICK, BROKEN, ...names]);
  await enough;
  await extrasEnded;
  const shown = [...paused].filter((n) => running.has(n));
  if (!shown.length) throw new Error('the session ended before any of its bundles could be shown running');
  console.log(`Session ${session.sessionId}: ${names.length} bundles; running and paused: ${shown.join(', ')}`);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
  page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  const ns = encodeURIComponent(server.namespace);
  const sessionUrl = `${server.uiUrl}/namespaces/${ns}/workflows/${encodeURIComponent(session.sessionId)}`;
  // The session's page names its run (…/<workflow id>/<run id>/history); its tabs are pages beside it.
  await page.goto(sessionUrl);
  await page.waitForURL((url) => url.pathname.endsWith('/history'));
  const runUrl = page.url().replace(/\/history$/, '');
  const tab = (name) => page.goto(`${runUrl}/${name}`);

  // The session and its bundle children (Relationships), each child's state beside it.
  await tab('relationships');
  // Tall enough for the graph and every child's row, the failed one's too.
  await page.setViewportSize({ width: 1440, height: 1400 });
  for (const name of [...shown, BROKEN]) await page.getByText(`${session.sessionId}/${name}`, { exact: true }).first().waitFor();
  await page.getByText('bundleBackupWorkflow').first().waitFor();
  await page.getByText('Failed').first().waitFor();
  await page.screenshot({ path: path.join(shots, 'session.png'), fullPage: true });
  await page.setViewportSize({ width: 1440, height: 900 });

  // Its summary, details and current details (every bundle's state and files), and the children by their summaries.
  await tab('user-metadata');
  // The UI renders each of them as Markdown in a frame of its own (…/render?content=<text>): the current details' frame lists the bundles.
  await page.getByText('Current Details').first().waitFor();
  // Each bundle is a list item: "- `name`: running, N files, B bytes".
  const details = page.frameLocator(`iframe[src*="${encodeURIComponent(`\`${shown[0]}\`: running`)}"]`);
  for (const name of shown) await details.getByText(name, { exact: true }).first().waitFor();
  for (const name of shown) await page.getByText(`backup of ${name}`, { exact: true }).first().waitFor();
  await page.screenshot({ path: path.join(shots, 'session-details.png'), fullPage: true });

  // The sessions list, found by the ohbackup search attributes.
  await page.goto(`${server.uiUrl}/namespaces/${ns}/workflows?query=${encodeURIComponent('OhbackupKind = "backup"')}`);
  await page.getByText(session.sessionId, { exact: true }).first().waitFor();
  await page.screenshot({ path: path.join(shots, 'sessions.png'), fullPage: true });

  // Released, and no worker left: what the UI still shows of the session.
  const sessionId = session.sessionId;
  await session.release();
  session = undefined;
  stopWorker.abort();
  await worker;
  await page.goto(`${runUrl}/history`);
  await page.getByText('partial').first().waitFor();
  await page.getByText(`${BROKEN}`).first().waitFor();
  await page.screenshot({ path: path.join(shots, 'session-closed.png'), fullPage: true });
  // Its memo: the final table of every bundle, kept with the closed workflow.
  await tab('memo');
  await page
    .getByText(/Started by/)
    .first()
    .waitFor();
  await page.screenshot({ path: path.join(shots, 'session-memo.png'), fullPage: true });
  // Summary and details stay; current details are blank without a worker; the children show Failed and Canceled.
  await tab('user-metadata');
  await page.getByText(`backup of ${BROKEN}`, { exact: true }).first().waitFor();
  await page.screenshot({ path: path.join(shots, 'session-closed-details.png'), fullPage: true });

  // Sessions by outcome, and the failed bundle children (red), as an operator filters them.
  await page.goto(`${server.uiUrl}/namespaces/${ns}/workflows?query=${encodeURIComponent('OhbackupOutcome = "partial"')}`);
  await page.getByText(sessionId, { exact: true }).first().waitFor();
  const top = await page.screenshot({ fullPage: false });
  await page.goto(`${server.uiUrl}/namespaces/${ns}/workflows?query=${encodeURIComponent('ExecutionStatus = "Failed"')}`);
  await page.getByText(`${sessionId}/${BROKEN}`, { exact: true }).first().waitFor();
  const bottom = await page.screenshot({ fullPage: false });
  await page.setContent(
    `<body style="margin:0">${[top, bottom].map((png) => `<img style="display:block;width:1440px" src="data:image/png;base64,${png.toString('base64')}">`).join('')}</body>`,
  );
  await page.setViewportSize({ width: 1440, height: 1800 });
  await page.screenshot({ path: path.join(shots, 'outcomes.png'), fullPage: true });
  console.log(
    `Saved in ${shots}: session.png (the session and its bundle children), session-details.png (summary and current details), sessions.png (sessions by OhbackupKind), ` +
      'session-closed.png, session-memo.png, session-closed-details.png (the released session with no worker left), outcomes.png (sessions by OhbackupOutcome, failed bundle children)',
  );
  ok = true;
} catch (err) {
  console.error(`Screenshot failed: ${err?.stack ?? err}`);
  // What the page showed instead, to see why.
  await page?.screenshot({ path: path.join(shots, 'failed.png'), fullPage: true }).catch(() => undefined);
  if (page) console.error(`The page as it was: ${path.join(shots, 'failed.png')} (${page.url()})`);
} finally {
  await browser?.close().catch(() => undefined);
  await session?.release().catch(() => undefined);
  await backup.closeConnection().catch(() => undefined);
  stopWorker.abort();
  await worker?.catch(() => undefined);
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);

/** A small bundle of the sample device's layout (as the sample device writes them), with optional hooks. */
async function writeBundle(dataRoot, name, files, hooks) {
  const root = path.join(dataRoot, name);
  for (const dir of ['data', 'backup/backup', 'backup/restore']) await mkdir(path.join(root, dir), { recursive: true });
  await writeFile(path.join(root, 'bundle.json'), JSON.stringify({ name, versionCode: 1, versionName: '1.0', ...(hooks ? { extension: hooks } : {}) }));
  await writeFile(path.join(root, 'backup_config.json'), JSON.stringify({ allowToBackupRestore: true }));
  for (const [rel, content] of Object.entries(files)) await writeFile(path.join(root, 'data', rel), content);
}

/** Chromium at CHROMIUM, installed with apt-get when missing and we are root; false (with the reason) when there is none. */
function ensureChromium() {
  if (existsSync(CHROMIUM)) return true;
  const isRoot = process.getuid?.() === 0;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  if (isRoot && hasApt && CHROMIUM === '/usr/bin/chromium') {
    console.log('Chromium is missing: apt-get install -y chromium ...');
    try {
      execFileSync('apt-get', ['install', '-y', 'chromium'], { stdio: 'inherit' });
    } catch {
      try {
        execFileSync('apt-get', ['update'], { stdio: 'inherit' });
        execFileSync('apt-get', ['install', '-y', 'chromium'], { stdio: 'inherit' });
      } catch {
        // Reported below.
      }
    }
    if (existsSync(CHROMIUM)) return true;
  }
  console.log(
    `Screenshot skipped: no Chromium at ${CHROMIUM}. Install Debian's package (as root: apt-get install -y chromium), ` +
      'or point CHROMIUM at a Chromium or Chrome binary, then run `npm run screenshot` again.',
  );
  return false;
}
