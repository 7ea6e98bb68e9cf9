/** Search attributes that let people find sessions in the Temporal UI; `ohbackup dev` registers them. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const OhbackupKind = defineSearchAttributeKey('OhbackupKind', SearchAttributeType.KEYWORD);
export const OhbackupBundles = defineSearchAttributeKey('OhbackupBundles', SearchAttributeType.KEYWORD_LIST);
export const OhbackupState = defineSearchAttributeKey('OhbackupState', SearchAttributeType.KEYWORD);

/** As `temporal server start-dev --search-attribute` takes them. */
export const SEARCH_ATTRIBUTE_FLAGS = ['OhbackupKind=Keyword', 'OhbackupBundles=KeywordList', 'OhbackupState=Keyword'];
