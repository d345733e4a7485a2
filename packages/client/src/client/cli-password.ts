/**
 * Reads a password on the terminal without echo (raw mode; Backspace edits, Ctrl-C aborts).
 * Rejects when stdin is not a terminal: scripts set VBI_PASSWORD instead.
 */
export function promptPassword(prompt: string, io: { stdin?: NodeJS.ReadStream; stderr?: NodeJS.WriteStream } = {}): Promise<string> {
  const stdin = io.stdin ?? process.stdin;
  const stderr = io.stderr ?? process.stderr;
  if (!stdin.isTTY) return Promise.reject(new PasswordUnavailable());
  return new Promise((resolve, reject) => {
    let value = '';
    stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    stdin.resume();
    const done = (err?: Error) => {
      stdin.removeListener('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const c of chunk) {
        if (c === '\r' || c === '\n' || c === '\u0004') return done();
        if (c === '\u0003') return done(new PasswordUnavailable('aborted'));
        if (c === '\u007f' || c === '\b') value = value.slice(0, -1);
        else if (c >= ' ') value += c;
      }
    };
    stdin.on('data', onData);
  });
}

/** No terminal to ask on (and no VBI_PASSWORD), or the user pressed Ctrl-C. */
export class PasswordUnavailable extends Error {
  constructor(why = 'no terminal to ask for the password on: set VBI_PASSWORD') {
    super(why);
    this.name = 'PasswordUnavailable';
  }
}
