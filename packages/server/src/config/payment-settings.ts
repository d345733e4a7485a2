import { readFileSync } from 'node:fs';
import { vbiError } from '@vbi/core/errors';
import type { PaymentSettings } from '../payments/provider-config';

type Env = Record<string, string | undefined>;

/**
 * The payment provider's settings from the environment, read and checked before anything starts
 * (docs/payments.md; packages/server/src/payments/provider-config.ts builds the provider):
 * - `VBI_PAYMENT_PROVIDER=stripe`: cards through Stripe. `VBI_STRIPE_SECRET_KEY_FILE` names a file
 *   holding the secret key (a file, not the variable itself, so the key is not in the process
 *   environment); optional `VBI_STRIPE_API_BASE` (https, or http on 127.0.0.1 / localhost only),
 *   `VBI_STRIPE_TIMEOUT_MS` (1000..60000), `VBI_STRIPE_KEY_PREFIX` (idempotency keys) and
 *   `VBI_STRIPE_PUBLISHABLE_KEY` (pk_…, public: the web app's buy page takes cards with Stripe.js).
 * - `sandbox`: no money moves. The default on a dev deployment; a production deployment (CA_URL
 *   set) must say it explicitly (a staging system that takes no real money).
 */
export function paymentSettings(env: Env): PaymentSettings {
  const chosen = env.VBI_PAYMENT_PROVIDER || (env.CA_URL ? undefined : 'sandbox');
  if (chosen === undefined) {
    throw vbiError('CONFIG_INVALID', "a production deployment (CA_URL set) needs VBI_PAYMENT_PROVIDER: 'stripe', or 'sandbox' only for a staging system that takes no real money");
  }
  if (chosen === 'sandbox') return { provider: 'sandbox' };
  if (chosen !== 'stripe') throw vbiError('CONFIG_INVALID', `VBI_PAYMENT_PROVIDER '${chosen}' is not available ('stripe' or 'sandbox')`);

  const keyFile = env.VBI_STRIPE_SECRET_KEY_FILE;
  if (!keyFile) throw vbiError('CONFIG_INVALID', 'VBI_PAYMENT_PROVIDER=stripe needs VBI_STRIPE_SECRET_KEY_FILE (a file holding the secret key)');
  let secretKey: string;
  try {
    secretKey = readFileSync(keyFile, 'utf8').trim();
  } catch (e) {
    throw vbiError('CONFIG_INVALID', `VBI_STRIPE_SECRET_KEY_FILE cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!/^(sk|rk)_(live|test)_[A-Za-z0-9]{8,}$/.test(secretKey)) {
    throw vbiError('CONFIG_INVALID', 'VBI_STRIPE_SECRET_KEY_FILE does not hold a Stripe secret key (sk_live_…, sk_test_…, rk_live_… or rk_test_…)');
  }
  const apiBase = env.VBI_STRIPE_API_BASE || 'https://api.stripe.com';
  let url: URL;
  try {
    url = new URL(apiBase);
  } catch {
    throw vbiError('CONFIG_INVALID', 'VBI_STRIPE_API_BASE is not a URL');
  }
  const local = url.hostname === '127.0.0.1' || url.hostname === 'localhost';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && local)) {
    throw vbiError('CONFIG_INVALID', 'VBI_STRIPE_API_BASE must be https (plain http only on 127.0.0.1 or localhost)');
  }
  const timeoutMs = env.VBI_STRIPE_TIMEOUT_MS ? Number(env.VBI_STRIPE_TIMEOUT_MS) : 10_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1000 || timeoutMs > 60_000) throw vbiError('CONFIG_INVALID', 'VBI_STRIPE_TIMEOUT_MS must be an integer from 1000 to 60000');
  const keyPrefix = env.VBI_STRIPE_KEY_PREFIX || 'vbi';
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(keyPrefix)) throw vbiError('CONFIG_INVALID', 'VBI_STRIPE_KEY_PREFIX must be 1 to 32 of A-Z a-z 0-9 _ . -');
  const publishableKey = env.VBI_STRIPE_PUBLISHABLE_KEY || undefined;
  if (publishableKey !== undefined && !/^pk_(live|test)_[A-Za-z0-9]{8,}$/.test(publishableKey)) {
    throw vbiError('CONFIG_INVALID', 'VBI_STRIPE_PUBLISHABLE_KEY is not a Stripe publishable key (pk_live_… or pk_test_…)');
  }
  if (publishableKey !== undefined && publishableKey.slice(3, 7) !== secretKey.slice(3, 7)) {
    throw vbiError('CONFIG_INVALID', 'VBI_STRIPE_PUBLISHABLE_KEY and the secret key are of different modes (live and test)');
  }
  return { provider: 'stripe', stripe: { secretKey, apiBase, timeoutMs, keyPrefix, publishableKey } };
}
