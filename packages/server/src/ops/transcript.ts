import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { isVbiError } from '@vbi/core/errors';

/**
 * The transcript of one backup or recovery step (`npm run backup`, `restore`, `journal`): what
 * ran, where, by whom, when, what it printed, what it reported and how it ended. One JSON file
 * per run in VBI_TRANSCRIPT_DIR (default <varDir>/transcripts), kept with the incident record.
 * The scripts print no PIN or key, so neither does the transcript. Key ceremony steps write their
 * own transcripts (packages/server/src/ceremony/transcript.ts).
 */
export interface OpsTranscript {
  procedure: string;
  argv: string[];
  startedAt: string;
  finishedAt: string;
  host: string;
  osUser: string;
  exitCode: number;
  /** Every line the step printed on standard output, in order. */
  output: string[];
  /** The step's own report (the restore's target and timeline, the replay's per-module states...). */
  result?: unknown;
  error?: { code: string; message: string };
}

/** What a step gets to print and report through. */
export interface TranscriptWriter {
  /** Prints a line on standard output and keeps it for the transcript. */
  out(text: string): void;
  /** The step's report, kept in the transcript. */
  report(result: unknown): void;
}

/**
 * Runs `step`, then writes its transcript whatever the outcome (an error is recorded, then thrown
 * on). The transcript's path goes to standard error as the process exits, so that standard output
 * stays what the step prints (JSON, for --json).
 */
export async function withTranscript(req: { dir: string; procedure: string; argv: string[] }, step: (t: TranscriptWriter) => Promise<number>): Promise<number> {
  const startedAt = new Date().toISOString();
  const output: string[] = [];
  let result: unknown;
  const t: TranscriptWriter = {
    out(text) {
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
      output.push(...text.replace(/\n$/, '').split('\n'));
    },
    report(r) {
      result = r;
    },
  };
  const write = (exitCode: number, error?: OpsTranscript['error']): void => {
    const transcript: OpsTranscript = {
      procedure: req.procedure, argv: req.argv, startedAt, finishedAt: new Date().toISOString(), host: hostname(), osUser: userInfo().username,
      exitCode, output, ...(result !== undefined ? { result } : {}), ...(error ? { error } : {}),
    };
    mkdirSync(req.dir, { recursive: true, mode: 0o700 });
    const path = join(req.dir, `${startedAt.replace(/[:.]/g, '-')}-${req.procedure}.json`);
    writeFileSync(path, JSON.stringify(transcript, null, 2) + '\n', { mode: 0o600 });
    // last, after the script's own error line (`CODE: message` stays the first line of stderr)
    process.once('exit', () => process.stderr.write(`transcript ${path}\n`));
  };
  try {
    const code = await step(t);
    write(code);
    return code;
  } catch (e) {
    write(1, isVbiError(e) ? { code: e.code, message: e.message } : { code: 'INTERNAL', message: (e as Error).message });
    throw e;
  }
}
