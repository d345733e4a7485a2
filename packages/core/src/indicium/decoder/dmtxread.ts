import { execFile } from 'node:child_process';
import { vbiError } from '../../errors';

/**
 * Reads DataMatrix symbols with dmtxread (libdmtx; Debian package dmtx-utils): a decoder that
 * shares no code with bwip-js, so a successful round trip proves the printed symbol, not just
 * our own encoder. dmtxread writes the decoded bytes unchanged to stdout (no -n, no -U).
 *
 * dmtxread has no separator between several symbols, so symbol k is taken as the output of
 * `-N k` minus the output of `-N k-1` (its scan order is deterministic); symbols are yielded
 * lazily, and most callers stop at the first one. Asking for one more symbol than the image
 * holds makes dmtxread scan the whole image: fast for a barcode, tens of seconds for a
 * 600-dpi page, so stop as soon as you have what you need.
 */
export async function* readDataMatrix(imagePath: string, opts: { maxSymbols?: number; command?: string } = {}): AsyncGenerator<Buffer> {
  const max = opts.maxSymbols ?? 4;
  let previous: Buffer = Buffer.alloc(0);
  for (let k = 1; k <= max; k++) {
    const out = await run(opts.command ?? 'dmtxread', ['-N', String(k), imagePath]);
    if (out.length <= previous.length || !out.subarray(0, previous.length).equals(previous)) return;
    yield out.subarray(previous.length);
    previous = out;
  }
}

/** The first symbol in the image; BARCODE_NOT_FOUND when there is none. */
export async function readFirstDataMatrix(imagePath: string): Promise<Buffer> {
  for await (const symbol of readDataMatrix(imagePath, { maxSymbols: 1 })) return symbol;
  throw vbiError('BARCODE_NOT_FOUND', `no DataMatrix symbol found in ${imagePath}`);
}

function run(command: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: 'buffer', maxBuffer: 1 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      if (code === 'ENOENT') return reject(vbiError('DECODER_UNAVAILABLE', `${command} not found: apt-get install dmtx-utils`));
      // Exit status 1 with empty output means "no symbol"; anything on stderr with no output is a real failure.
      if (err && stdout.length === 0 && stderr.length > 0) return reject(new Error(`${command} failed: ${stderr.toString().trim()}`));
      resolve(stdout);
    });
  });
}
