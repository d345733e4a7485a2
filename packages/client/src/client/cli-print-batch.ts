import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseBatchList } from './batch-list';
import { required, Values } from './cli-commands';
import { CliContext, UsageError } from './cli-context';
import { checkAddresses, closeQuietly, describe, saveLabel, sizeOf } from './cli-print';
import { NetworkError } from './http';
import { LABEL_FORMATS, LabelFormat } from './label-output';
import { formatMills } from './money';
import { ProgressBar } from './progress';

/** Items per print request in a batch: each request is one authorisation and one answer. */
export const DEFAULT_CHUNK = 50;

/** `vbi print-batch LIST.csv --out DIR [--format pdf|png|svg] [--size S] [--chunk N]`. */
export async function cmdPrintBatch(ctx: CliContext, v: Values, args: string[]): Promise<number> {
  if (args.length !== 1) throw new UsageError('give one CSV file: vbi print-batch list.csv --out dir/');
  const dir = resolve(ctx.io.cwd, required(v, 'out'));
  const format = (typeof v.format === 'string' ? v.format : 'pdf') as LabelFormat;
  if (!LABEL_FORMATS.includes(format)) throw new UsageError(`--format must be one of ${LABEL_FORMATS.join(', ')}`);
  const chunk = v.chunk === undefined ? DEFAULT_CHUNK : Number(v.chunk);
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > 500) throw new UsageError('--chunk must be 1..500');
  const listPath = resolve(ctx.io.cwd, args[0]);
  if (!existsSync(listPath)) throw new UsageError(`no such file: ${args[0]}`);

  let rows;
  try {
    // The list is checked before the password is asked for; the default class comes from the key file.
    rows = parseBatchList(readFileSync(listPath, 'utf8'), { mailClass: '' });
  } catch (e) {
    throw new UsageError(`${args[0]}: ${(e as Error).message}`);
  }
  const client = await ctx.client();
  for (const row of rows) if (row.item.rate && !row.item.rate.mailClass) row.item.rate.mailClass = client.state.defaults.mailClass;
  const size = sizeOf(v, client);
  const fileOf = (file: string) => join(dir, `${file}.${format}`);
  for (const row of rows) {
    try {
      checkAddresses(size, row.deliveryAddress, client.state.defaults.returnAddress);
    } catch (e) {
      throw new UsageError(`record ${row.record}: ${(e as Error).message}`);
    }
    if (existsSync(fileOf(row.file))) throw new UsageError(`${fileOf(row.file)} exists; refusing to overwrite a label`);
  }
  await fs.mkdir(dir, { recursive: true });

  const bar = new ProgressBar(rows.length, ctx.io.stderr);
  // voided: not printed and not debited (voided or refused by the service, or never sent);
  // unverified: debited but unusable (a failed check, an unwritable label, an unknown outcome).
  const count = { printed: 0, voided: 0, unverified: 0 };
  const problems: string[] = [];
  const note = () => `printed ${count.printed} voided ${count.voided}${count.unverified ? ` unverified ${count.unverified}` : ''}`;
  let done = 0;
  let stopped: Error | undefined;
  bar.update(0, note());
  await client.openSession();
  try {
    for (let start = 0; start < rows.length && !stopped; start += chunk) {
      const slice = rows.slice(start, start + chunk);
      try {
        await client.print(slice.map((r) => r.item), {
          onProgress: async ({ item }) => {
            const row = slice[item.index];
            if (item.status === 'printed' && item.indicium) {
              const ok = await saveLabel(ctx, fileOf(row.file), { indicium: item.indicium, size, deliveryAddress: row.deliveryAddress, returnAddress: client.state.defaults.returnAddress });
              if (ok) count.printed++;
              else {
                count.unverified++;
                problems.push(`record ${row.record}: printed (indicium ${item.indiciumId ?? '-'}) but the label could not be written`);
              }
            } else if (item.status === 'voided' || item.status === 'failed') {
              count.voided++;
              problems.push(`record ${row.record}: ${item.status} (${item.reason ?? '?'}), nothing debited`);
            } else {
              count.unverified++;
              problems.push(`record ${row.record}: FAILED CHECK after debit (${describe(item.error)}); do not mail it, ask for a refund of indicium ${item.indiciumId ?? '-'}`);
            }
            bar.update(++done, note());
          },
        });
        if (client.session?.ended) stopped = client.session.ended;
      } catch (e) {
        // The request failed as a whole (the service refused it, or the network): stop here.
        stopped = e as Error;
      }
    }
  } finally {
    await closeQuietly(ctx, client);
  }
  if (stopped) {
    // A refusal from the service changed nothing; after a network failure the outcome is unknown.
    const unknown = stopped instanceof NetworkError;
    for (const row of rows.slice(done)) {
      problems.push(unknown
        ? `record ${row.record}: outcome unknown (${describe(stopped)}); check 'vbi history' before printing it again`
        : `record ${row.record}: not printed (${describe(stopped)}), nothing debited`);
    }
    if (unknown) count.unverified += rows.length - done;
    else count.voided += rows.length - done;
    bar.update(done, note());
  }
  bar.finish();
  for (const p of problems) ctx.warn(p);
  ctx.say(`printed ${count.printed}, voided ${count.voided}${count.unverified ? `, unverified ${count.unverified}` : ''} of ${rows.length}; labels in ${dir}`);
  ctx.say(`available now: ${formatMills(client.registers.descending)}`);
  return count.printed === rows.length ? 0 : 1;
}
