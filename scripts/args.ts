/**
 * `--name N` from the command line: `dflt` when absent; a negative or non-numeric value (or, with
 * `integer`, a fraction) stops the program with exit code 2.
 */
export function numberArg(name: string, dflt: number, opts: { integer: boolean }): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!(opts.integer ? Number.isSafeInteger(v) : Number.isFinite(v)) || v < 0) {
    process.stderr.write(`--${name} needs a non-negative ${opts.integer ? 'integer' : 'number'}\n`);
    process.exit(2);
  }
  return v;
}
