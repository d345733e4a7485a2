/**
 * Card details through Stripe.js (docs/payments.md, "The web app"): the card number is typed into
 * Stripe's own field (an iframe from js.stripe.com) and turned into a PaymentMethod id by Stripe;
 * this page and the service see only that id. Stripe.js is loaded from js.stripe.com, as Stripe
 * requires (never bundled), only when the service's processor is Stripe.
 */

/** The part of Stripe.js (v3) this page uses. */
interface StripeJs {
  elements(): { create(type: 'card', options?: Record<string, unknown>): StripeCardElement };
  createPaymentMethod(req: { type: 'card'; card: StripeCardElement }): Promise<{ paymentMethod?: { id: string }; error?: { message?: string; code?: string } }>;
}
interface StripeCardElement {
  mount(el: HTMLElement): void;
}
type StripeFactory = (publishableKey: string) => StripeJs;

declare global {
  interface Window { Stripe?: StripeFactory }
}

const STRIPE_JS = 'https://js.stripe.com/v3/';
let loading: Promise<StripeFactory> | undefined;

function loadStripe(): Promise<StripeFactory> {
  if (window.Stripe) return Promise.resolve(window.Stripe);
  loading ??= new Promise<StripeFactory>((resolve, reject) => {
    const script = document.createElement('script');
    script.src = STRIPE_JS;
    script.async = true;
    script.addEventListener('load', () => (window.Stripe ? resolve(window.Stripe) : reject(new Error('Stripe.js loaded without Stripe()'))));
    script.addEventListener('error', () => {
      loading = undefined; // asked again on the next visit of the page
      reject(Object.assign(new Error('Stripe.js could not be loaded from js.stripe.com: cards cannot be taken now'), { code: 'STRIPE_JS_UNAVAILABLE' }));
    });
    document.head.append(script);
  });
  return loading;
}

/** A card field of Stripe's mounted in `into`; `paymentMethod()` turns what was typed into a PaymentMethod id. */
export async function stripeCard(publishableKey: string, into: HTMLElement): Promise<{ paymentMethod(): Promise<string> }> {
  const stripe = (await loadStripe())(publishableKey);
  const card = stripe.elements().create('card', { hidePostalCode: false });
  card.mount(into);
  return {
    async paymentMethod() {
      const r = await stripe.createPaymentMethod({ type: 'card', card });
      if (r.error || !r.paymentMethod) {
        // Stripe's own words (an incomplete number, a card it refuses outright); nothing was sent to the service
        throw Object.assign(new Error(r.error?.message ?? 'the card was not accepted'), { code: 'CARD_INCOMPLETE' });
      }
      return r.paymentMethod.id;
    },
  };
}
