/**
 * A text progress bar for batch printing, written to a stream (stderr): redrawn in place on a
 * terminal, one line per update otherwise (logs, CI). No dependency.
 */
export class ProgressBar {
  private lastLength = 0;

  constructor(
    private readonly total: number,
    private readonly out: { write(s: string): unknown; isTTY?: boolean } = process.stderr,
    private readonly width = 30,
  ) {}

  /** Draws `done` of `total` with a trailing note (e.g. "printed 11 voided 1"). */
  update(done: number, note = ''): void {
    const line = renderBar(done, this.total, this.width, note);
    if (this.out.isTTY) {
      this.out.write(`\r${line}${' '.repeat(Math.max(0, this.lastLength - line.length))}`);
      this.lastLength = line.length;
    } else {
      this.out.write(`${line}\n`);
    }
  }

  /** Ends the line on a terminal. */
  finish(): void {
    if (this.out.isTTY && this.lastLength > 0) this.out.write('\n');
    this.lastLength = 0;
  }
}

/** "[##########----------]  10/20  50% note" */
export function renderBar(done: number, total: number, width: number, note = ''): string {
  const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(ratio * width);
  const pct = String(Math.floor(ratio * 100)).padStart(3);
  const count = `${String(done).padStart(String(total).length)}/${total}`;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${count} ${pct}%${note ? ` ${note}` : ''}`;
}
