// Devices of many distinct bundles for the load run and the soak: the sample
// device (engine/sampleDevice.ts) written once as a template, then each
// backup-able sample bundle copied under new names (data, modes and mtimes
// kept), so sessions can each have their own bundles.
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeSampleDevice } from '../dist/engine/sampleDevice.js';

/** Writes the sample device into `templateDir`; returns its backup-able bundles (name, files, bytes). */
export async function writeTemplate(templateDir, { scale, seed }) {
  const device = await writeSampleDevice(templateDir, { scale, seed });
  return device.bundles.filter((b) => b.backupable);
}

/** Copies the template bundle `from` into `dataRoot` as bundle `name`. */
export async function copyBundle(templateDir, from, dataRoot, name) {
  const dir = path.join(dataRoot, name);
  await cp(path.join(templateDir, from), dir, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  const bundleJson = path.join(dir, 'bundle.json');
  const bundle = JSON.parse(await readFile(bundleJson, 'utf8'));
  await writeFile(bundleJson, JSON.stringify({ ...bundle, name }, null, 2) + '\n');
  return dir;
}
