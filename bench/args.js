// Option reading shared by the load and soak scripts: `--name value` pairs, checked numbers.

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
