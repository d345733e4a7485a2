import { PaymentProvider } from './payment-provider';
import { SandboxPaymentProvider } from './sandbox-provider';
import { StripePaymentProvider, type StripeOptions } from './stripe-provider';

/**
 * The payment provider configuration chose (packages/server/src/config/payment-settings.ts reads VBI_PAYMENT_PROVIDER
 * and the VBI_STRIPE_* settings; docs/payments.md): `stripe`, cards through Stripe, or `sandbox`,
 * where no money moves.
 */
export type PaymentSettings = { provider: 'sandbox' } | { provider: 'stripe'; stripe: StripeOptions };

export function paymentProvider(settings: PaymentSettings): PaymentProvider {
  return settings.provider === 'sandbox' ? new SandboxPaymentProvider() : new StripePaymentProvider(settings.stripe);
}
