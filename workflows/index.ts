/** Every workflow the worker registers. */
export { sessionWorkflow } from './sessionWorkflow.js';
export { bundleBackupWorkflow } from './bundleBackupWorkflow.js';
export { bundleRestoreWorkflow } from './bundleRestoreWorkflow.js';
export { capabilitiesWorkflow, bundleHookWorkflow, cleanBundleTempWorkflow } from './deviceRequestWorkflows.js';
export { scheduledBackupWorkflow } from './scheduledBackupWorkflow.js';
export { bundleClaimWorkflow } from './bundleClaimWorkflow.js';
