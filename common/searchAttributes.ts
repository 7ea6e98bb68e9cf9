/** Search attributes that let people find sessions in the Temporal UI; `ohbackup dev` registers them. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const OhbackupKind = defineSearchAttributeKey('OhbackupKind', SearchAttributeType.KEYWORD);
export const OhbackupBundles = defineSearchAttributeKey('OhbackupBundles', SearchAttributeType.KEYWORD_LIST);
export const OhbackupState = defineSearchAttributeKey('OhbackupState', SearchAttributeType.KEYWORD);
export const OhbackupDevice = defineSearchAttributeKey('OhbackupDevice', SearchAttributeType.KEYWORD);

/** As `temporal server start-dev --search-attribute` takes them. */
export const SEARCH_ATTRIBUTE_FLAGS = ['OhbackupKind=Keyword', 'OhbackupBundles=KeywordList', 'OhbackupState=Keyword', 'OhbackupDevice=Keyword'];

/**
 * The bundle names a session lists in OhbackupBundles: as many as fit in the
 * server's size limit for one search attribute value (2 KB by default), so a
 * session of hundreds of bundles stays findable by its first ones.
 */
export function searchableBundles(names: readonly string[]): string[] {
  const out: string[] = [];
  let size = 0;
  for (const name of names) {
    size += name.length + 4;
    if (size > 1800) break;
    out.push(name);
  }
  return out;
}
