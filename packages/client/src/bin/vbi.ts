#!/usr/bin/env node
import { runMain } from '@vbi/core/cli/run-main';
import { parseArgs, ParseArgsConfig } from 'node:util';
import { CliContext, CliIo, DEFAULT_SERVER, GlobalOptions, UsageError } from '../client/cli-context';
import { cliEnvSettings } from '../client/cli-config';
import { cmdBalance, cmdBuy, cmdHistory, cmdLogin, cmdMoveModule, cmdRefund, cmdRegister, cmdRekey, cmdSettle, cmdVerify, Values } from '../client/cli-commands';
import { cmdPrint } from '../client/cli-print';
import { cmdPrintBatch, DEFAULT_CHUNK } from '../client/cli-print-batch';
import { cmdRecover, cmdReprint } from '../client/cli-recover';

/**
 * The `vbi` command: the mailer's side of docs/protocol.md on the command line.
 * Exit status: 0 success; 1 an error (printed as `CODE: message`) or not everything printed;
 * 2 a usage error.
 */
export const USAGE = `usage: vbi <command> [options]

commands:
  register --name NAME --zip ZIP5 --return-address "line1|line2|..." [--size 4x6|10] [--class CLASS]
        register a new meter and write the key file (asks for a new password twice)
  login                     prove the password to the meter (opens and closes a session), show the balance
  balance                   registers and state of the meter
  history [--limit N]       the last N movements (default 20, at most 500)
  buy AMOUNT [--card TOKEN | --ach TOKEN | --check TOKEN]
        buy postage, e.g. vbi buy 20.00 --card tok_approve (the default); at most 3 decimals
  settle PAYMENT_ID         settle a pending purchase (a check) once it has cleared
  rekey [--change-password] a new HMK for the meter, and with --change-password a new password
        (VBI_NEW_PASSWORD, else asked twice); needed once the user secrets expire (USER_SECRETS_EXPIRED)
  move-module               send secrets to another module of the service from now on, once it proves
        itself against the root in the key file; commands that open a session, and rekey, do this
        by themselves when the key file's module is unknown (UNKNOWN_MODULE) or not available (NO_MODULE)
  print --to "Name|Street|City ST ZIP" --zip ZIP (--weight OZ [--class CLASS] [--zone N] | --postage AMOUNT)
        [--out label.pdf|label.png|label.svg] [--size 4x6|10]
        print one label; the rate table prices --weight (default class from registration,
        first-class-letter); default output label-<meter>-<sequence>.pdf
  print-batch LIST.csv --out DIR/ [--format pdf|png|svg] [--size 4x6|10] [--chunk N]
        print one label per CSV record into DIR/, ${DEFAULT_CHUNK} items per request by default;
        progress on stderr, then a summary of printed and voided items
  refund --partial AMOUNT --reason TEXT | --full [--reason TEXT]
        return unused postage from the descending register
  recover --out DIR/ [--format pdf|png|svg] [--size 4x6|10]
        finish every purchase or print whose answer was lost (a crash, a network failure) and
        write the labels of its indicia; the same request is sent again, never a second debit
  reprint (--batch ID | --key IDEMPOTENCY_KEY | --from NO --to NO) --out DIR/ [--format F] [--size S]
        fetch committed indicia again (the same bytes, nothing debited) and write their labels;
        --from/--to are piece numbers, the NO. printed on the labels;
        the address block carries the destination ZIP only (the meter keeps no address)
  verify LABEL.png|LABEL.pdf | --payload BASE64
        ask the service to verify an indicium (exit 0 only for VALID); a check by the mailer
        is not recorded as a sighting, so it never makes the piece a DUPLICATE

print-batch CSV: a header row, then one record per piece; columns (any order, case-insensitive):
  to       required  delivery address lines separated by '|'
  zip      required  destination ZIP: 5, 9 or 11 digits
  weight             ounces, priced from the rate table with 'class' (default first-class-letter)
  class              mail class for 'weight', e.g. first-class-letter, priority-mail
  zone               1..9 for zoned classes
  postage            a fixed amount instead of weight, e.g. 0.68
  file               label file name without extension (default 0001, 0002, ...)
  example:  to,zip,weight
            "Jane Doe|1 Elm St|Springfield IL 62701",627010001,1

options (every command):
  --server URL       or VBI_SERVER; default: the server saved at registration, else ${DEFAULT_SERVER}
  --key-file PATH    or VBI_KEY_FILE; default ~/.vbi/key.json
  --root FILE        or VBI_ROOT_CERT (register); default certs/postal-root.pem, else var/dev-ca/root.pem
  -h, --help         this text
  password: VBI_PASSWORD, else asked on the terminal without echo

exit status: 0 ok; 1 error (printed as CODE: message) or not every item printed; 2 usage error`;

const GLOBAL = {
  server: { type: 'string' },
  'key-file': { type: 'string' },
  root: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

type Command = (ctx: CliContext, values: Values, args: string[]) => Promise<number>;

const COMMANDS: Record<string, { options: ParseArgsConfig['options']; run: Command }> = {
  register: {
    options: { name: { type: 'string' }, zip: { type: 'string' }, 'return-address': { type: 'string' }, size: { type: 'string' }, class: { type: 'string' } },
    run: (ctx, v, args) => (noArgs(args), cmdRegister(ctx, v)),
  },
  login: { options: {}, run: (ctx, _v, args) => (noArgs(args), cmdLogin(ctx)) },
  balance: { options: {}, run: (ctx, _v, args) => (noArgs(args), cmdBalance(ctx)) },
  history: { options: { limit: { type: 'string' } }, run: (ctx, v, args) => (noArgs(args), cmdHistory(ctx, v)) },
  buy: { options: { card: { type: 'string' }, ach: { type: 'string' }, check: { type: 'string' } }, run: cmdBuy },
  settle: { options: {}, run: cmdSettle },
  rekey: { options: { 'change-password': { type: 'boolean' } }, run: (ctx, v, args) => (noArgs(args), cmdRekey(ctx, v)) },
  'move-module': { options: {}, run: (ctx, _v, args) => (noArgs(args), cmdMoveModule(ctx)) },
  print: {
    options: {
      to: { type: 'string' }, zip: { type: 'string' }, weight: { type: 'string' }, class: { type: 'string' }, zone: { type: 'string' },
      postage: { type: 'string' }, out: { type: 'string' }, size: { type: 'string' },
    },
    run: (ctx, v, args) => (noArgs(args), cmdPrint(ctx, v)),
  },
  'print-batch': { options: { out: { type: 'string' }, format: { type: 'string' }, size: { type: 'string' }, chunk: { type: 'string' } }, run: cmdPrintBatch },
  refund: {
    options: { partial: { type: 'string' }, full: { type: 'boolean' }, reason: { type: 'string' } },
    run: (ctx, v, args) => (noArgs(args), cmdRefund(ctx, v)),
  },
  verify: { options: { payload: { type: 'string' } }, run: cmdVerify },
  recover: { options: { out: { type: 'string' }, format: { type: 'string' }, size: { type: 'string' } }, run: cmdRecover },
  reprint: {
    options: { batch: { type: 'string' }, key: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, out: { type: 'string' }, format: { type: 'string' }, size: { type: 'string' } },
    run: cmdReprint,
  },
};

function noArgs(args: string[]): void {
  if (args.length) throw new UsageError(`unexpected argument '${args[0]}'`);
}

/** Runs one command line; returns the exit status. Never throws. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    io.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  try {
    const command = COMMANDS[name];
    if (!command || !Object.hasOwn(COMMANDS, name)) throw new UsageError(`unknown command '${name}'`);
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...command.options }, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (parsed.values.help) {
      io.stdout.write(`${USAGE}\n`);
      return 0;
    }
    const ctx = new CliContext(io, parsed.values as GlobalOptions);
    return await command.run(ctx, parsed.values as Values, parsed.positionals);
  } catch (e) {
    return report(e, io);
  }
}

function report(e: unknown, io: CliIo): number {
  if (e instanceof UsageError) {
    io.stderr.write(`usage error: ${e.message}\n(vbi --help for the usage)\n`);
    return 2;
  }
  const err = e as { code?: unknown; message?: unknown; details?: unknown; stack?: unknown };
  const code = typeof err?.code === 'string' ? err.code : 'ERROR';
  io.stderr.write(`${code}: ${String(err?.message ?? e)}\n`);
  if (err?.details && typeof err.details === 'object') io.stderr.write(`details: ${JSON.stringify(err.details)}\n`);
  if (code === 'REGISTER_MISMATCH') {
    io.stderr.write('the key file\'s register copy differs from the meter\'s; it was not changed. Contact the vendor before printing.\n');
  }
  if (code === 'ERROR' && cliEnvSettings(io.env).debug) io.stderr.write(`${String(err?.stack)}\n`);
  return 1;
}

if (require.main === module) {
  // 'drain': a label written to stdout is not cut off by the exit
  runMain(() => runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() }), { end: 'drain' });
}
