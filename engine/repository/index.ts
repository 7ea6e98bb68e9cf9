/**
 * Repositories: ohbackup's backup sessions kept in a restic repository, one
 * snapshot per session, deduplicated and encrypted by restic.
 *
 *   repository.ts     Repository: init/open, storeSet/storeWhileWriting, snapshots, resolve, chain,
 *                     materializeSet/materializeChain, check, forget, diff, copyFrom
 *   storedLayout.ts   what a snapshot holds, and where
 *   snapshotTags.ts   hostname and tags: what restic's own tools show
 *   stageSet.ts       a set folder laid out as a snapshot stores it (SetStager: bundle by bundle, on engine threads)
 *   stageBundle.ts    one bundle staged, every entry checked against its index (an engine thread's job)
 *   materialize.ts    a snapshot back into a set folder
 *   bundleRebuilder.ts one bundle's slices and big files re-made byte for byte from its stored files
 *   baseManifests.ts  an increment's base as a set folder of manifests only
 *   chain.ts          increments and their bases, by session
 *   forgetPlan.ts     restic's keep policy, widened so no chain is cut
 *   checkBundles.ts   stored bundles against their indexes
 *   bundleState.ts    what a restore holds, and diffs between two
 *   backupProgress.ts restic backup's JSON status and summary
 *   resticProcess.ts  running restic; exit codes → errors.ts
 *   environment.ts    repository and secrets: only in the child's environment
 *   resticBinary.ts   finding (or building) restic, and its minimum version
 *   stagingArea.ts    private temp folders
 *   stateRepository.ts the embedded default: a repository in the state folder
 */
export * from './repository.js';
export * from './errors.js';
export type { RepositoryLocation } from './environment.js';
export type { StoreProgress, StoreSummary } from './backupProgress.js';
export type { SnapshotInfo, SnapshotMeta } from './snapshotTags.js';
export type { KeepPolicy, ForgetDecision } from './forgetPlan.js';
export type { BundleDiff } from './bundleState.js';
export type { BundleProblem } from './checkBundles.js';
export type { MaterializedSet } from './materialize.js';
export { findRestic, MIN_RESTIC, RESTIC_MODULE, ResticTooOld } from './resticBinary.js';
export { OHBACKUP_TAG } from './snapshotTags.js';
export { openStateRepository, stateRepositoryOptions, STATE_PASSWORD, STATE_REPOSITORY } from './stateRepository.js';
