// The anchors' tools and their versions: tar from PATH; restic as ohbackup
// finds it (OHBACKUP_RESTIC, PATH, $(go env GOPATH)/bin, else built once from
// its Go module with engine/goTool.ts) — and, when the one found is older than
// ohbackup accepts (a distribution's), restic 0.18.1 built into
// $(go env GOPATH)/bin and used instead; the Temporal CLI the dev server runs.
import { findGoTool } from '../dist/engine/goTool.js';
import { findRestic, ResticTooOld } from '../dist/engine/repository/index.js';
import { RESTIC } from '../dist/engine/repository/resticBinary.js';
import { findTemporalCli } from '../dist/workers/temporalCli.js';
import { onPath, output } from './procs.js';

export async function findAnchors({ log }) {
  const tar = await onPath('tar');
  if (!tar) throw new Error('tar is not on PATH: the bench needs it as the anchor of the backup and restore targets.');
  const tarVersion = (await output(tar, ['--version'])).split('\n')[0];
  let restic;
  let resticWhy;
  try {
    restic = (await findRestic({ log })).path;
  } catch (err) {
    if (err instanceof ResticTooOld && !process.env.OHBACKUP_RESTIC) {
      // Only $(go env GOPATH)/bin or a build: the old one on PATH is skipped.
      log(`${err.message.split('. ')[0]}: using restic from $(go env GOPATH)/bin, built when missing`);
      restic = await findGoTool(RESTIC, { log, env: { PATH: '' } }).catch((e) => ((resticWhy = e.message), undefined));
      if (restic) process.env.OHBACKUP_RESTIC = restic;
    } else resticWhy = err.message;
  }
  if (!restic) log(`restic not found: the restic columns and the repository figures are skipped (${resticWhy})`);
  const resticVersion = restic ? (await output(restic, ['version'])).trim().split(' compiled')[0] : undefined;
  const temporal = await findTemporalCli({ log });
  const temporalVersion = (await output(temporal, ['--version'])).trim();
  return { tar, tarVersion, restic, resticVersion, resticWhy, temporal, temporalVersion };
}
