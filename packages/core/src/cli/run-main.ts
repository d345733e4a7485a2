import { isVbiError } from '../errors';

export interface RunMainOptions {
  /** The exit code of a failure (default 1), or a function of the error. */
  failureCode?: number | ((e: unknown) => number);
  /**
   * 'exit' (default) ends the process with the code at once. 'drain' only sets process.exitCode,
   * so output still being written to a pipe (a label on stdout) is not cut off; the process ends
   * when nothing is left to do.
   */
  end?: 'exit' | 'drain';
}

/**
 * How every command-line program of the project ends (the entry points in packages/<package>/src/bin
 * and scripts/*): `main` resolves to an exit code, or to nothing when the process is to run on (a
 * server). A failure prints `CODE: message` for a VbiError, with its `output` or `log` details when
 * it carries them (backup, restore), or else the stack, and ends with the failure code.
 */
export function runMain(main: () => Promise<number | void>, options: RunMainOptions = {}): void {
  const end = (code: number) => {
    if (options.end === 'drain') process.exitCode = code;
    else process.exit(code);
  };
  main().then((code) => {
    if (typeof code === 'number') end(code);
  }, (e: unknown) => {
    process.stderr.write(failureText(e));
    const f = options.failureCode ?? 1;
    end(typeof f === 'function' ? f(e) : f);
  });
}

function failureText(e: unknown): string {
  if (!isVbiError(e)) return `${(e as Error)?.stack ?? String(e)}\n`;
  const extra = [e.details?.output, e.details?.log].filter((x) => x !== undefined && x !== null && x !== '').map((x) => `${String(x)}\n`).join('');
  return `${e.code}: ${e.message}\n${extra}`;
}
