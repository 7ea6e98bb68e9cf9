/** The command line's output pieces: a bar line at any width, the --json switch, absent values as null. */
import { describe, expect, it } from 'vitest';
import { jsonRequested, withNulls } from '../../cli/output/json.js';
import { barLine, hardWrap } from '../../cli/output/progress.js';

describe('barLine', () => {
  const fields = {
    name: 'com.example.an.extremely.long.bundle.name',
    nameWidth: 24,
    state: 'paused (rate 0)',
    size: '1023.9 MiB of 1023.9 MiB',
    progress: 0.5,
    eta: 'ETA 1:02:03',
  };
  it('keeps name, state and size within the width; the bar takes what is left', () => {
    for (const width of [60, 80, 120]) {
      const line = barLine(width, fields);
      expect(line.length).toBeLessThanOrEqual(width);
      expect(line).toMatch(/^ com\.example\.\S*… paused \(rate 0\) 1023\.9 MiB of 1023\.9 MiB/);
    }
    expect(barLine(80, fields)).toContain(' com.example.an.extremel… paused');
    expect(barLine(120, fields)).toMatch(/\|█+░+\| ETA 1:02:03$/);
  });
  it('drops the bar, never the state or size, when there is no room', () => {
    expect(barLine(70, fields)).not.toContain('|');
    expect(barLine(70, fields)).toContain('paused (rate 0) 1023.9 MiB of 1023.9 MiB');
  });
});

describe('hardWrap', () => {
  it('cuts lines longer than the width into pieces', () => {
    expect(hardWrap('a'.repeat(50), 20)).toBe(`${'a'.repeat(20)}\n${'a'.repeat(20)}\n${'a'.repeat(10)}`);
    expect(hardWrap('short\nlines', 20)).toBe('short\nlines');
  });
});

describe('the --json contract helpers', () => {
  it('sees --json among the options only', () => {
    expect(jsonRequested(['status', 'x', '--json'])).toBe(true);
    expect(jsonRequested(['status', 'x', '--', '--json'])).toBe(false);
    expect(jsonRequested(['status', 'x'])).toBe(false);
  });
  it('gives absent values as null, deeply', () => {
    expect(withNulls({ a: undefined, b: [{ c: undefined }], d: 1 })).toEqual({ a: null, b: [{ c: null }], d: 1 });
  });
});
