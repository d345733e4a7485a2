import { isVbiError } from '../errors';

/**
 * How a command-line program of the project ends (src/main.ts, the MeterGen and CA programs,
 * scripts/*): `main` resolves to an exit code, or to nothing when the process is to run on (a
 * server). A failure prints `CODE: message` for a VbiError, with its `output` or `log` details when
 * it carries them (backup, restore), or else the stack, and exits with `failureCode`.
 */
export function runMain(main: () => Promise<number | void>, failureCode = 1): void {
  main().then((code) => {
    if (typeof code === 'number') process.exit(code);
  }, (e: unknown) => {
    process.stderr.write(failureText(e));
    process.exit(failureCode);
  });
}

function failureText(e: unknown): string {
  if (!isVbiError(e)) return `${(e as Error)?.stack ?? String(e)}\n`;
  const extra = [e.details?.output, e.details?.log].filter((x) => x !== undefined && x !== null && x !== '').map((x) => `${String(x)}\n`).join('');
  return `${e.code}: ${e.message}\n${extra}`;
}
