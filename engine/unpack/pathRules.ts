/** The path rules of a restore: every name stays strictly inside the tree, and the folders involved do not overlap. */
import path from 'node:path';
import { invalid } from './options.js';

function isInside(child: string, parent: string): boolean {
  return child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

/**
 * Why `name` is not an acceptable relative path inside `root`, or undefined
 * when it is. Used for tar entry names and index paths alike.
 */
export function unsafePathReason(name: string, root: string): string | undefined {
  if (name === '') return 'empty path';
  if (name.includes('\0')) return 'NUL in path';
  if (name.startsWith('/')) return 'absolute path';
  const segments = name.split('/');
  if (segments.includes('')) return 'empty path segment';
  if (segments.includes('..')) return "'..' segment";
  if (segments.includes('.')) return "'.' segment";
  if (path.posix.normalize(name) !== name) return 'not a normalised path';
  if (!isInside(path.resolve(root, name), root)) return 'resolves outside the restore folder';
  return undefined;
}

/** restoreDir, dataDir and stagingDir (resolved) must not overlap (restoreDir may hold stagingDir). */
export function checkLayout(restoreDir: string, dataDir: string, stagingDir: string): void {
  const overlap = (a: string, b: string) => a === b || isInside(a, b) || isInside(b, a);
  if (overlap(stagingDir, dataDir)) throw invalid('stagingDir and dataDir must not overlap');
  if (overlap(restoreDir, dataDir)) throw invalid('restoreDir and dataDir must not overlap');
  if (stagingDir === restoreDir || isInside(restoreDir, stagingDir)) throw invalid('restoreDir must not be inside stagingDir');
}
