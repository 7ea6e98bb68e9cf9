/**
 * A device's record (`ohbackup devices`): each `ohbackup worker --device D`
 * signals it when it starts; the record keeps the latest in its memo, which
 * the service lists with no worker running. Liveness is the task queue's
 * pollers, not this. History bounded: continue-as-new after 100 signals.
 */
import { allHandlersFinished, condition, continueAsNew, setHandler, upsertMemo } from '@temporalio/workflow';
import { DEVICE_RECORD_MEMO, type DeviceRecord } from '../common/deviceRun.js';
import { deviceRecordSignal, type DeviceRecordWorkflow } from '../common/messages.js';

export async function deviceRecordWorkflow(record: DeviceRecord, seen = 0): Promise<void> {
  let current = record;
  let signals = 0;
  upsertMemo({ [DEVICE_RECORD_MEMO]: current });
  setHandler(deviceRecordSignal, (next) => {
    current = next;
    signals++;
    upsertMemo({ [DEVICE_RECORD_MEMO]: current });
  });
  await condition(() => signals >= 100);
  await condition(allHandlersFinished);
  await continueAsNew<DeviceRecordWorkflow>(current, seen + signals);
}

void (deviceRecordWorkflow satisfies DeviceRecordWorkflow);
