/**
 * The tar header of one entry of a slice (`part.<n>.tar`), from the fields
 * the index records: the packer writes slices with it and a repository's
 * materializer re-makes them with it, so a re-made slice is byte for byte the
 * one handed over (same header, same data, same tar writer).
 */
import type tar from 'tar-stream';
import { tarHeaderBlocks } from './tarHeader.js';

type Headers = Parameters<ReturnType<typeof tar.pack>['entry']>[0];

export interface SliceEntryFields {
  path: string;
  kind: 'file' | 'dir';
  size: number;
  mode: number;
  mtimeMs: number;
}

export function sliceEntryHeader(e: SliceEntryFields): Headers {
  return e.kind === 'dir'
    ? { name: e.path, type: 'directory', mode: e.mode, mtime: new Date(e.mtimeMs) }
    : { name: e.path, type: 'file', size: e.size, mode: e.mode, mtime: new Date(e.mtimeMs) };
}

/** The tar blocks before the entry's data, byte for byte what `tar.pack().entry(sliceEntryHeader(e))` writes. */
export function sliceEntryBlocks(e: SliceEntryFields): Buffer[] {
  return tarHeaderBlocks({
    name: e.path,
    type: e.kind === 'dir' ? 'directory' : 'file',
    size: e.kind === 'dir' ? 0 : e.size,
    mode: e.mode,
    mtime: new Date(e.mtimeMs),
  });
}
