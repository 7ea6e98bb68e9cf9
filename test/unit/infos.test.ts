import { describe, expect, it } from 'vitest';
import { appMappings, readInfoValues } from '../../client/infos.js';

describe('readInfoValues: what the service reads of an info string', () => {
  it('reads several objects in one string, with or without commas, and drops // and /* */ comments', () => {
    expect(readInfoValues('{"a":1},\n{"b":2}')).toEqual([{ a: 1 }, { b: 2 }]);
    expect(readInfoValues('{"a":1}{"b":[1,2]}')).toEqual([{ a: 1 }, { b: [1, 2] }]);
    expect(readInfoValues('{"a": 1, // one\n "b": /* two */ 2}')).toEqual([{ a: 1, b: 2 }]);
  });

  it('keeps // and braces inside strings, skips what does not parse, never throws', () => {
    expect(readInfoValues('{"url":"http://x/{y}","q":"a\\"}"}')).toEqual([{ url: 'http://x/{y}', q: 'a"}' }]);
    expect(readInfoValues('{"a":} {"b":1}')).toEqual([{ b: 1 }]);
    for (const s of ['', '{', 'not json', '"unterminated', '}}}', '/*', '//']) expect(() => readInfoValues(s)).not.toThrow();
    expect(readInfoValues('plain text')).toEqual([]);
  });

  it('finds an app mapping in a commented info', () => {
    const info = '{"infos":[{"details":[{"detail":[{"source":"com.a", // old\n"target":"com.b"}],"type":"app_mapping_relation"}],"type":"broadcast"}]}';
    expect([...appMappings([info, 'garbage'])]).toEqual([['com.a', 'com.b']]);
  });
});
