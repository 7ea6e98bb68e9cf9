import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { FileHandleBatch, isUnhandledUpdate } from '../../client/sessions/fileHandleBatch.js';
import { InFlightLimit } from '../../client/sessions/inFlight.js';
import { MAX_FILE_HANDLES_PER_UPDATE, type FileMetaInput } from '../../common/messages.js';
import type { ErrorInfo } from '../../common/errors.js';

/** Lets the event loop run a few rounds (no clock involved): what the batch would send by then, it has sent. */
const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};
const meta = (uri: string): FileMetaInput => ({ bundleName: 'com.example.docs', uri });

describe('FileHandleBatch', () => {
  it('sends the calls made together as one update, at most MAX_FILE_HANDLES_PER_UPDATE files each, and answers each call on its own', async () => {
    const sent: string[][] = [];
    const batch = new FileHandleBatch(new InFlightLimit(8), async (metas) => {
      sent.push(metas.map((m) => m.uri));
      return metas.map((m): ErrorInfo | null => (m.uri === 'f3' ? { code: 13900020, message: 'Invalid argument: f3 was asked for already' } : null));
    });
    const uris = Array.from({ length: MAX_FILE_HANDLES_PER_UPDATE + 2 }, (_, i) => `f${i}`);
    const settled = await Promise.allSettled(uris.map((u) => batch.ask(meta(u))));
    expect(sent).toEqual([uris.slice(0, MAX_FILE_HANDLES_PER_UPDATE), uris.slice(MAX_FILE_HANDLES_PER_UPDATE)]);
    expect(settled.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).toEqual([
      expect.objectContaining({ code: 13900020, message: 'Invalid argument: f3 was asked for already' }),
    ]);
    // Later calls go in a later update.
    await batch.ask(meta('later'));
    expect(sent.at(-1)).toEqual(['later']);
  });

  it('gathers the calls made while every place under the limit is taken into the next update', async () => {
    const sent: string[][] = [];
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const batch = new FileHandleBatch(new InFlightLimit(1), async (metas) => {
      sent.push(metas.map((m) => m.uri));
      await gate;
      return metas.map(() => null);
    });
    const first = batch.ask(meta('a'));
    await turns(3);
    const b = batch.ask(meta('b'));
    await turns(3);
    const rest = [b, batch.ask(meta('c'))];
    await turns(3);
    expect(sent).toEqual([['a']]);
    open();
    await Promise.all([first, ...rest]);
    expect(sent).toEqual([['a'], ['b', 'c']]);
  });

  it('a failed update rejects every call it carried', async () => {
    const batch = new FileHandleBatch(new InFlightLimit(8), () => Promise.reject(new Error('no answer')));
    const settled = await Promise.allSettled([batch.ask(meta('a')), batch.ask(meta('b'))]);
    expect(settled.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual(['no answer', 'no answer']);
  });
});

describe('isUnhandledUpdate', () => {
  it("tells an older session's refusal of getFileHandles (no handler) from any other failure", () => {
    // The SDK's shape: the client's WorkflowUpdateFailedError caused by the workflow's rejection.
    const unhandled = new WorkflowUpdateFailedError(
      'Workflow Update failed',
      ApplicationFailure.nonRetryable('No registered handler for update: getFileHandles'),
    );
    expect(isUnhandledUpdate(unhandled, 'getFileHandles')).toBe(true);
    expect(isUnhandledUpdate(unhandled, 'publishFile')).toBe(false);
    const refused = new WorkflowUpdateFailedError('Workflow Update failed', ApplicationFailure.nonRetryable('getFileHandles takes 1 to 64 files'));
    expect(isUnhandledUpdate(refused, 'getFileHandles')).toBe(false);
    expect(isUnhandledUpdate(new Error('unreachable'), 'getFileHandles')).toBe(false);
  });
});
