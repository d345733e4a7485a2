import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { LabelSize } from '@vbi/core/indicium/render/label-request';
import { CliContext, UsageError } from './cli-context';
import { amountArg, lines, required, Values } from './cli-commands';
import { checkLabelText, labelFormatOf, labelSizeOf, writeLabelFile } from './label-output';
import { formatMills } from './money';
import type { PrintItemRequest } from './print-item';
import type { PrintedItem } from './print-results';
import type { VbiClient } from './vbi-client';

/** `vbi print --to ... --zip ... (--weight OZ [--class C] [--zone N] | --postage AMOUNT) [--out F] [--size S]`. */
export async function cmdPrint(ctx: CliContext, v: Values): Promise<number> {
  const deliveryAddress = lines(required(v, 'to'));
  const item = itemFromFlags(v);
  const out = typeof v.out === 'string' ? resolve(ctx.io.cwd, v.out) : undefined;
  if (out) {
    labelFormatOf(out);
    if (existsSync(out)) throw new UsageError(`${out} exists; refusing to overwrite a label`);
  }
  const client = await ctx.client();
  const size = sizeOf(v, client);
  checkAddresses(size, deliveryAddress, client.state.defaults.returnAddress);
  if (item.rate && !item.rate.mailClass) item.rate.mailClass = client.state.defaults.mailClass;

  await client.openSession();
  let printed: PrintedItem;
  try {
    printed = (await client.print([item])).items[0];
  } finally {
    await closeQuietly(ctx, client);
  }
  if (printed.status !== 'printed' || !printed.indicium || !printed.decoded) return reportUnprinted(ctx, printed);
  const f = printed.decoded.fields;
  const file = out ?? resolve(ctx.io.cwd, `label-${f.meterId}-${f.sequence}.pdf`);
  const written = await saveLabel(ctx, file, { indicium: printed.indicium, size, deliveryAddress, returnAddress: client.state.defaults.returnAddress });
  if (!written) {
    // paid for but not on paper: never a success
    ctx.warn(`the meter was debited ${formatMills(f.postage)} for indicium ${printed.indiciumId ?? '-'} (sequence ${f.sequence}); keep the base64 above: it is the signed indicium ('vbi verify --payload' checks it)`);
    ctx.warn(`to write the label again: vbi reprint --from ${f.sequence} --to ${f.sequence} --out DIR/`);
    return 1;
  }
  ctx.say(`printed ${formatMills(f.postage)} ${f.rateCategory} to ${f.destinationZip} (indicium ${printed.indiciumId ?? '-'}, sequence ${f.sequence}) -> ${file}`);
  ctx.say(`available now: ${formatMills(client.registers.descending)}`);
  return 0;
}

/** The item of `vbi print` from its flags. */
function itemFromFlags(v: Values): PrintItemRequest {
  const zip = required(v, 'zip').replace(/-/g, '');
  if (!/^(\d{5}|\d{9}|\d{11})$/.test(zip)) throw new UsageError('--zip must have 5, 9 or 11 digits');
  const item: PrintItemRequest = { destinationZip: zip };
  if (typeof v.weight === 'string') {
    const weightOz = Number(v.weight);
    if (!/^\d+(\.\d+)?$/.test(v.weight) || !(weightOz > 0)) throw new UsageError('--weight must be a positive number of ounces');
    const zone = typeof v.zone === 'string' ? Number(v.zone) : undefined;
    if (zone !== undefined && !/^[1-9]$/.test(v.zone as string)) throw new UsageError('--zone must be 1..9');
    item.rate = { mailClass: typeof v.class === 'string' ? v.class : '', weightOz, ...(zone !== undefined ? { zone } : {}) };
  } else if (typeof v.class === 'string' || typeof v.zone === 'string') {
    throw new UsageError('--class and --zone need --weight');
  }
  if (typeof v.postage === 'string') item.postage = amountArg(v.postage, 'postage');
  if (!item.rate && item.postage === undefined) throw new UsageError('give --weight (priced from the rate table) or --postage');
  return item;
}

/** --size, else the key file's default. */
export function sizeOf(v: Values, client: VbiClient): LabelSize {
  return typeof v.size === 'string' ? labelSizeOf(v.size) : client.state.defaults.labelSize;
}

/** Label text checked before anything is printed (a usage error). */
export function checkAddresses(size: LabelSize, deliveryAddress: string[], returnAddress: string[]): void {
  try {
    checkLabelText({ size, deliveryAddress, returnAddress });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Writes a label; on failure the indicium (already paid for) is printed to stderr as base64 so
 * it can be rendered again. True when written.
 */
export async function saveLabel(ctx: CliContext, file: string, req: Parameters<typeof writeLabelFile>[1]): Promise<boolean> {
  try {
    await writeLabelFile(file, req);
    return true;
  } catch (e) {
    ctx.warn(`could not write ${file}: ${describe(e)}`);
    ctx.warn(`indicium (base64, keep it): ${req.indicium.toString('base64')}`);
    return false;
  }
}

function reportUnprinted(ctx: CliContext, item: PrintedItem): number {
  if (item.status === 'voided' || item.status === 'failed') ctx.warn(`${item.reason ?? 'VOIDED'}: the item was not printed; nothing was debited`);
  else ctx.warn(`${item.reason ?? 'FAILED'}: ${describe(item.error)}; the meter was debited for indicium ${item.indiciumId ?? '-'}: do not mail it, ask for a refund`);
  return 1;
}

/** `CODE: message` of an error. */
export function describe(e: unknown): string {
  const x = e as { code?: unknown; message?: unknown } | undefined;
  if (!x) return 'unknown error';
  return typeof x.code === 'string' ? `${x.code}: ${String(x.message)}` : String(x.message ?? e);
}

/** Closes the session; a failure is only reported (the labels are what matters). */
export async function closeQuietly(ctx: CliContext, client: VbiClient): Promise<void> {
  try {
    await client.closeSession();
  } catch (e) {
    ctx.warn(`closing the session failed: ${describe(e)}`);
  }
}
