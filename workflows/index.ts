/** Every workflow the worker registers (workflow types are these function names). */
export { sessionWorkflow } from './session/workflow.js';
export { bundleBackupWorkflow } from './bundle/backup.js';
export { bundleRestoreWorkflow } from './bundle/restore.js';
export { capabilitiesWorkflow, bundleHookWorkflow, cleanBundleTempWorkflow } from './deviceRequestWorkflows.js';
export { scheduledBackupWorkflow } from './scheduledBackupWorkflow.js';
export { bundleClaimWorkflow } from './bundleClaimWorkflow.js';
export { deviceRunWorkflow } from './deviceRunWorkflow.js';
export { deviceRecordWorkflow } from './deviceRecordWorkflow.js';
