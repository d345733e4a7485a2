/**
 * npm run operator -- pool
 *                   | buy-stock --amount 1000.00 --reference POST-REF
 *                   | fraud-cases [--meter METER]
 *                   | suspend|reactivate|withdraw|refund-and-close|revoke-licence METER --reason TEXT
 *                   | licences [--status pending|refused|...] [--meter METER]
 *                   | licence-events (the authority's revocations of licences no request names)
 * The operator's routes (/v1/operator, docs/api-conventions.md) from a terminal: VBI_SERVER names
 * the service (default http://127.0.0.1:8080), VBI_OPERATOR_TOKEN the operator's bearer credential
 * (`npm run credentials -- add operator --name NAME`). Amounts are dollars with up to 3 decimals,
 * sent as integer mills. Errors print the API's code; exit code 1.
 */
import { parseMills } from '@vbi/client/client/money';
import { formatMills } from '@vbi/client/client/money';
import { vbiError } from '@vbi/core/errors';
import { runMain } from '@vbi/core/cli/run-main';
import { operatorSettings } from '../config/tool-settings';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>> {
  const { token, server: base } = operatorSettings(process.env);
  if (!token) throw vbiError('OPERATOR_UNKNOWN', 'set VBI_OPERATOR_TOKEN to an operator credential (npm run credentials -- add operator --name NAME)');
  const res = await fetch(`${base}${path}`, {
    method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await res.json().catch(() => ({})) as Record<string, unknown>;
  if (!res.ok) {
    const e = answer.error as { code?: string; message?: string } | undefined;
    process.stderr.write(`${e?.code ?? `HTTP_${res.status}`}: ${e?.message ?? res.statusText}\n`);
    process.exit(1);
  }
  return answer;
}

const usage = 'usage: npm run operator -- pool | buy-stock --amount 1000.00 --reference REF | fraud-cases [--meter METER] | suspend|reactivate|withdraw|refund-and-close|revoke-licence METER --reason TEXT | licences [--status STATUS] [--meter METER] | licence-events\n';

async function main(): Promise<number> {
  const [command, arg] = process.argv.slice(2);
  const out = (v: unknown) => process.stdout.write(JSON.stringify(v, null, 2) + '\n');
  switch (command) {
    case 'pool': {
      const { pool } = await call('GET', '/v1/operator/pool') as { pool: { purchased: number; available: number; refundsPaid: number } };
      process.stdout.write(`bought from the post ${formatMills(pool.purchased)}, available ${formatMills(pool.available)}, refunds paid ${formatMills(pool.refundsPaid)}\n`);
      return 0;
    }
    case 'buy-stock': {
      const amount = option('--amount');
      const reference = option('--reference');
      if (!amount || !reference) break;
      const r = await call('POST', '/v1/operator/pool/purchases', { amount: parseMills(amount), reference }) as { purchaseId: number; created: boolean; amount: number };
      process.stdout.write(`${r.created ? 'entered' : 'already entered'}: purchase ${r.purchaseId}, ${formatMills(r.amount)}, reference ${reference}\n`);
      return 0;
    }
    case 'fraud-cases': {
      const meter = option('--meter');
      out(await call('GET', `/v1/operator/fraud-cases${meter ? `?meterId=${encodeURIComponent(meter)}` : ''}`));
      return 0;
    }
    case 'licences': {
      const query = new URLSearchParams();
      const status = option('--status');
      const meter = option('--meter');
      if (status) query.set('status', status);
      if (meter) query.set('meterId', meter);
      out(await call('GET', `/v1/operator/licence-requests${query.size ? `?${query.toString()}` : ''}`));
      return 0;
    }
    case 'licence-events':
      out(await call('GET', '/v1/operator/licence-events/unmatched'));
      return 0;
    case 'suspend':
    case 'reactivate':
    case 'withdraw':
    case 'refund-and-close':
    case 'revoke-licence': {
      const reason = option('--reason');
      if (!arg || arg.startsWith('--') || !reason) break;
      out(await call('POST', `/v1/operator/meters/${encodeURIComponent(arg)}/${command}`, { reason }));
      return 0;
    }
    default:
  }
  process.stderr.write(usage);
  return 2;
}

runMain(main);
