import { existsSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { required, Values } from './cli-commands';
import { CliContext, UsageError } from './cli-context';
import { closeQuietly, saveLabel, sizeOf } from './cli-print';
import { LABEL_FORMATS, LabelFormat } from './label-output';
import { formatMills } from './money';
import type { DecodedIndicium } from '@vbi/core/indicium/layout';
import type { RecoveredRequest, RedeliverySelector, VbiClient } from './vbi-client';

/**
 * Labels of indicia fetched again. The meter keeps no delivery address: the label carries the
 * destination ZIP in its address block, to be completed by hand or printed again from the list.
 */
async function writeLabels(ctx: CliContext, client: VbiClient, v: Values, indicia: Array<{ indiciumId: number; indicium: Buffer; decoded: DecodedIndicium }>): Promise<{ written: number; failed: number }> {
  const dir = resolve(ctx.io.cwd, required(v, 'out'));
  const format = (typeof v.format === 'string' ? v.format : 'pdf') as LabelFormat;
  if (!LABEL_FORMATS.includes(format)) throw new UsageError(`--format must be one of ${LABEL_FORMATS.join(', ')}`);
  await fs.mkdir(dir, { recursive: true });
  const size = sizeOf(v, client);
  let written = 0;
  let failed = 0;
  for (const x of indicia) {
    const f = x.decoded.fields;
    const file = join(dir, `${f.meterId}-${f.sequence}.${format}`);
    if (existsSync(file)) {
      ctx.say(`indicium ${x.indiciumId} (sequence ${f.sequence}): ${file} exists, kept`);
      continue;
    }
    const ok = await saveLabel(ctx, file, { indicium: x.indicium, size, deliveryAddress: [`ZIP ${f.destinationZip}`], returnAddress: client.state.defaults.returnAddress });
    if (ok) {
      written++;
      ctx.say(`indicium ${x.indiciumId}: ${formatMills(f.postage)} to ${f.destinationZip} (sequence ${f.sequence}) -> ${file}`);
    } else failed++;
  }
  return { written, failed };
}

/**
 * `vbi recover --out DIR/ [--format F] [--size S]`: finishes every purchase or print whose
 * answer was lost (the client or the service crashed, the network failed), with the same
 * Idempotency-Key, and writes the labels of the recovered indicia.
 */
export async function cmdRecover(ctx: CliContext, v: Values, args: string[]): Promise<number> {
  if (args.length) throw new UsageError(`unexpected argument '${args[0]}'`);
  required(v, 'out');
  const recovered: RecoveredRequest[] = [];
  const client = await ctx.client({ onRecovered: (r) => { recovered.push(r); } });
  // opening the session finishes saved purchases first, then prints (their indicia in this session)
  await client.openSession({ heartbeats: false });
  try {
    await client.recover();
  } finally {
    await closeQuietly(ctx, client);
  }
  if (recovered.length === 0) ctx.say('nothing was pending');
  let failed = 0;
  for (const r of recovered) {
    if (r.refused) ctx.say(`${r.op} ${r.idempotencyKey}: refused by the service (${r.refused}); nothing happened`);
    else if (r.response) ctx.say(`${r.op} ${r.idempotencyKey}: done (receipt sequence ${r.response.receipt.sequence})`);
    else if (r.outcome) {
      ctx.say(`${r.op} ${r.idempotencyKey}: printed ${r.outcome.printed}, voided ${r.outcome.voided}, failed ${r.outcome.failed}`);
      const printed = r.outcome.items.filter((i) => i.status === 'printed' && i.indicium && i.decoded);
      failed += (await writeLabels(ctx, client, v, printed.map((i) => ({ indiciumId: i.indiciumId!, indicium: i.indicium!, decoded: i.decoded! })))).failed;
    }
  }
  ctx.say(`available now: ${formatMills(client.registers.descending)}`);
  return failed === 0 ? 0 : 1;
}

/**
 * `vbi reprint (--batch ID | --key IDEMPOTENCY_KEY | --from NO --to NO) --out DIR/`: committed
 * indicia fetched again (the same bytes as printed; nothing is debited) and written as labels.
 */
export async function cmdReprint(ctx: CliContext, v: Values, args: string[]): Promise<number> {
  if (args.length) throw new UsageError(`unexpected argument '${args[0]}'`);
  required(v, 'out');
  const given = ['batch', 'key', 'from'].filter((k) => typeof v[k] === 'string');
  if (given.length !== 1 || (typeof v.from === 'string') !== (typeof v.to === 'string')) throw new UsageError('give one of --batch ID, --key KEY, or --from NO --to NO');
  let selector: RedeliverySelector;
  if (typeof v.batch === 'string') selector = { batchId: v.batch };
  else if (typeof v.key === 'string') selector = { idempotencyKey: v.key };
  else {
    const from = Number(v.from);
    const to = Number(v.to);
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 1 || to < from) throw new UsageError('--from and --to are piece numbers (the NO. printed on the label), 1 <= from <= to');
    selector = { fromSequence: from, toSequence: to };
  }
  const client = await ctx.client();
  await client.openSession({ heartbeats: false });
  let indicia;
  try {
    indicia = await client.redeliver(selector);
  } finally {
    await closeQuietly(ctx, client);
  }
  if (indicia.length === 0) {
    ctx.warn('no committed indicium matches');
    return 1;
  }
  const { failed } = await writeLabels(ctx, client, v, indicia);
  return failed === 0 ? 0 : 1;
}
