// Option reading shared by the bench's scripts: `--name value` pairs with checked numbers (load, soak), and strict
// parseArgs options (the step scripts).
import { parseArgs } from 'node:util';

/** Reads `--name value` options from `argv`; a bad number prints why and exits 2 (wrong usage). */
export function optionReader(argv) {
  const value = (name) => {
    const i = argv.indexOf(name);
    return i < 0 ? undefined : argv[i + 1];
  };
  const number = (name, fallback, { min = 1, integer = true } = {}) => {
    const raw = value(name);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min || (integer && !Number.isSafeInteger(v))) {
      console.error(`${name} expects ${integer ? 'a whole number' : 'a number'} ≥ ${min}`);
      process.exit(2);
    }
    return v;
  };
  return { value, number };
}

/**
 * The script's options by node:util's parseArgs, strictly: an unknown or misspelt option prints why and `usage` and
 * exits 2, --help (-h) prints `usage` and exits 0, so neither ever starts the script's default run.
 */
export function strictOptions(usage, options) {
  let values;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    console.error(`${err.message}\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  return values;
}

/** Option `name` of strictOptions' `values` as a whole number ≥ 0 (`fallback` when absent); anything else prints why and `usage` and exits 2. */
export function wholeNumber(values, name, fallback, usage) {
  const n = values[name] === undefined ? fallback : Number(values[name]);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} wants a whole number, got ${values[name]}\n${usage}`);
    process.exit(2);
  }
  return n;
}
