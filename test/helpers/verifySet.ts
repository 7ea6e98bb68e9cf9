/** Checks a backup set against the device it came from; the logic lives in client/sets/verify.ts (the demo uses it too). */
export { compareBundleSet, sha256File } from '../../client/sets/verify.js';
