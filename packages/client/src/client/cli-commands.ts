import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { readIndiciumFromLabel } from '@vbi/core/indicium/decoder/label-reader';
import { CliContext, DEFAULT_SERVER, UsageError } from './cli-context';
import { HttpClient } from './http';
import { checkLabelText, labelSizeOf } from './label-output';
import { formatMills, parseMills } from './money';
import { VbiClient } from './vbi-client';
import { verifyIndiciumRemote } from './verify-remote';
import type { Payment } from '@vbi/core/protocol/bodies';
import type { BalanceResult } from './wire';

/** Parsed values of one command line (node:util parseArgs). */
export type Values = Record<string, string | boolean | string[] | undefined>;

/** A decimal amount argument in mills; a bad one is a usage error. */
export function amountArg(text: string | undefined, name: string): number {
  if (text === undefined) throw new UsageError(`${name} is required`);
  try {
    return parseMills(text, name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** A string option that must be present. */
export function required(values: Values, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`--${name} is required`);
  return v;
}

/** "a|b|c" → lines, trimmed, empty ones dropped. */
export function lines(text: string): string[] {
  return text.split('|').map((l) => l.trim()).filter((l) => l.length > 0);
}

/** `vbi register`: a new meter and key file. */
export async function cmdRegister(ctx: CliContext, v: Values): Promise<number> {
  const name = required(v, 'name').trim();
  const zip = required(v, 'zip').trim();
  if (!/^\d{5}$/.test(zip)) throw new UsageError('--zip must be the 5-digit licensing ZIP code');
  const returnAddress = lines(required(v, 'return-address'));
  if (returnAddress.length > 4) throw new UsageError('--return-address has at most 4 lines');
  const labelSize = labelSizeOf(typeof v.size === 'string' ? v.size : '4x6');
  try {
    checkLabelText({ size: labelSize, deliveryAddress: ['-'], returnAddress });
  } catch (e) {
    throw new UsageError(`--return-address: ${(e as Error).message}`);
  }
  const rootCertPem = ctx.rootCertPem();
  const password = await ctx.password({ confirm: true });
  const client = await VbiClient.register({
    baseUrl: ctx.serverOverride ?? DEFAULT_SERVER, rootCertPem, name, licensingZip: zip, returnAddress, password,
    keyFilePath: ctx.keyFilePath, labelSize, mailClass: typeof v.class === 'string' ? v.class : undefined,
    fetch: ctx.io.fetch, clock: ctx.io.clock,
  });
  const s = client.state;
  ctx.say(`registered meter ${s.meterId} (account ${s.accountId ?? '-'}) with module ${s.moduleSerial}`);
  ctx.say(`key file: ${ctx.keyFilePath} (encrypted under your password; keep a backup)`);
  return 0;
}

/** `vbi login`: proves the password to the module (session open + close) and shows the balance. */
export async function cmdLogin(ctx: CliContext): Promise<number> {
  const client = await ctx.client();
  const session = await client.openSession({ heartbeats: false });
  await client.closeSession();
  ctx.say(`password accepted by the meter (session ${session.sessionId} opened and closed)`);
  printBalance(ctx, client.meterId, await client.balance());
  return 0;
}

/** `vbi balance`. */
export async function cmdBalance(ctx: CliContext): Promise<number> {
  const client = await ctx.client();
  printBalance(ctx, client.meterId, await client.balance());
  return 0;
}

/**
 * `rekey [--change-password]`: a new HMK (and password) for the meter — when the user secrets are
 * near or past their expiry (USER_SECRETS_EXPIRED), or to change the password. The new password
 * comes from VBI_NEW_PASSWORD, else is asked twice on the terminal.
 */
export async function cmdRekey(ctx: CliContext, v: Values): Promise<number> {
  const client = await ctx.client();
  let newPassword: string | undefined;
  if (v['change-password']) {
    newPassword = ctx.settings.newPassword || (await ctx.password({ confirm: true, ignoreEnv: true }));
    if (newPassword.length < 8) throw new UsageError('the new password must have at least 8 characters');
  }
  const r = await client.rekey({ newPassword });
  ctx.say(`meter ${client.meterId}: new HMK${newPassword === undefined ? '' : ' and password'} in use; the user secrets expire ${r.userSecretsExpiry}`);
  return 0;
}

/**
 * `vbi move-module`: the key file moves to another module of the service, which proves itself as
 * at registration (VbiClient.moveModule) — for when the key file's module is gone for good.
 * Session-open and re-key do this by themselves when that module is unknown or unavailable.
 */
export async function cmdMoveModule(ctx: CliContext): Promise<number> {
  const client = await ctx.client();
  const from = client.state.moduleSerial;
  const to = await client.moveModule();
  ctx.say(`meter ${client.meterId}: secrets now go to module ${to} (was ${from}); it proved itself against the root in the key file`);
  return 0;
}

function printBalance(ctx: CliContext, meterId: string, b: BalanceResult): void {
  ctx.say(`meter ${meterId} (${b.state})`);
  ctx.say(`available (descending register): ${money(b.descending)}`);
  ctx.say(`used (ascending register):       ${money(b.ascending)}`);
  ctx.say(`refunded (refund register):      ${money(b.refundRegister)}`);
}

function money(mills: number): string {
  return `${formatMills(mills)} (${mills} mills)`;
}

/** `vbi history [--limit N]`. */
export async function cmdHistory(ctx: CliContext, v: Values): Promise<number> {
  const limit = v.limit === undefined ? 20 : Number(v.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new UsageError('--limit must be 1..500');
  const client = await ctx.client();
  const entries = await client.history(limit);
  if (entries.length === 0) ctx.say('no movements yet');
  for (const e of entries) {
    ctx.say(`${e.time}  ${e.type.padEnd(12)} ${formatMills(e.amount).padStart(12)}  ascending ${formatMills(e.ascending)}  descending ${formatMills(e.descending)}`);
  }
  return 0;
}

/** `vbi buy AMOUNT [--card T | --ach T | --check T]`. */
export async function cmdBuy(ctx: CliContext, v: Values, args: string[]): Promise<number> {
  if (args.length !== 1) throw new UsageError('give exactly one amount, e.g. vbi buy 20.00');
  const amount = amountArg(args[0], 'amount');
  const given = (['card', 'ach', 'check'] as const).filter((k) => typeof v[k] === 'string');
  if (given.length > 1) throw new UsageError('give one of --card, --ach, --check');
  const payment: Payment = given.length ? { kind: given[0], token: v[given[0]] as string } : { kind: 'card', token: 'tok_approve' };
  const client = await ctx.client();
  const r = await client.buy({ amount, payment });
  if (r.status === 'approved') {
    ctx.say(`payment ${r.paymentId} approved: ${money(r.amount ?? amount)} added to meter ${client.meterId}`);
    ctx.say(`available now: ${money(client.registers.descending)}`);
  } else {
    ctx.say(`payment ${r.paymentId} ${r.status}: run 'vbi settle ${r.paymentId}' once the ${payment.kind} has cleared`);
  }
  return 0;
}

/** `vbi settle PAYMENT_ID`. */
export async function cmdSettle(ctx: CliContext, _v: Values, args: string[]): Promise<number> {
  if (args.length !== 1 || !/^[1-9]\d{0,15}$/.test(args[0])) throw new UsageError('give the payment number, e.g. vbi settle 42');
  const client = await ctx.client();
  const r = await client.settle(Number(args[0]));
  ctx.say(`payment ${r.paymentId}: ${r.status}`);
  if (r.status === 'approved') ctx.say(`available now: ${money(client.registers.descending)}`);
  return r.status === 'declined' ? 1 : 0;
}

/** `vbi refund --partial AMOUNT --reason TEXT | --full [--reason TEXT]`. */
export async function cmdRefund(ctx: CliContext, v: Values): Promise<number> {
  const partial = typeof v.partial === 'string';
  if (partial === (v.full === true)) throw new UsageError('give either --partial AMOUNT or --full');
  const reason = typeof v.reason === 'string' ? v.reason.trim() : '';
  if (partial && !reason) throw new UsageError('--reason is required with --partial');
  const client = await ctx.client();
  const r = partial
    ? await client.refund({ kind: 'partial', amount: amountArg(v.partial as string, 'refund'), reason })
    : await client.refund({ kind: 'full', reason: reason || 'full refund' });
  ctx.say(`refunded ${money(r.refunded)}; available now: ${money(client.registers.descending)}`);
  return 0;
}

/** `vbi verify LABEL | --payload B64`: the service's verdict (exit 0 only for VALID). */
export async function cmdVerify(ctx: CliContext, v: Values, args: string[]): Promise<number> {
  const payload = typeof v.payload === 'string' ? v.payload : undefined;
  if ((args.length === 1) === (payload !== undefined) || args.length > 1) throw new UsageError('give a label file (.png, .pdf) or --payload BASE64');
  let indicium: Buffer;
  if (payload !== undefined) {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(payload)) throw new UsageError('--payload is not base64');
    indicium = Buffer.from(payload, 'base64');
  } else {
    const file = resolve(ctx.io.cwd, args[0]);
    if (!existsSync(file)) throw new UsageError(`no such file: ${args[0]}`);
    indicium = await readIndiciumFromLabel(file);
  }
  const http = new HttpClient({ baseUrl: ctx.serverOverride ?? DEFAULT_SERVER, fetch: ctx.io.fetch });
  const r = await verifyIndiciumRemote(http, indicium);
  ctx.say(r.result);
  if (r.reason) ctx.say(`reason: ${r.reason}`);
  const f = r.fields as Record<string, unknown> | undefined;
  if (f) {
    ctx.say(`meter: ${String(f.meterId)}  sequence: ${String(f.sequence)}  value: ${typeof f.postage === 'number' ? money(f.postage) : '?'}`);
    ctx.say(`date of mailing: ${String(f.dateOfMailing)}  from ZIP: ${String(f.originZip)}  to ZIP: ${String(f.destinationZip || '-')}`);
  }
  if (r.firstSeen) ctx.say(`first seen: ${r.firstSeen.location ?? '?'} at ${r.firstSeen.seenAt}`);
  return r.result === 'VALID' ? 0 : 1;
}

