/** Compares a restored data folder with its source; the logic lives in client/sets/verify.ts (the demo uses it too). */
export { compareRestoredBundle, compareTrees } from '../../client/sets/verify.js';
