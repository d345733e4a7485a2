import { expect } from 'chai';
import { VbiError } from '@vbi/core/errors';
import { chargeWithRetry } from '@vbi/server/payments/charge';
import { AuthorizeRequest, PaymentLinkError, PaymentProvider } from '@vbi/server/payments/payment-provider';
import { SandboxPaymentProvider } from '@vbi/server/payments/sandbox-provider';

async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof VbiError) return { code: e.code, status: e.status, details: e.details };
    throw e;
  }
}

describe('payments', () => {
  let sandbox: SandboxPaymentProvider;
  let waits: number[];
  const sleep = async (ms: number) => {
    waits.push(ms);
  };
  let n = 0;
  const req = (kind: 'card' | 'ach' | 'check', token: string, amount = 50_000): AuthorizeRequest => ({ paymentId: `pay-${++n}`, amount, method: { kind, token } });

  beforeEach(() => {
    sandbox = new SandboxPaymentProvider({ clearAfterPolls: 2 });
    waits = [];
  });

  describe('chargeWithRetry over the sandbox', () => {
    const cases: Array<{ name: string; kind: 'card' | 'ach' | 'check'; token: string; expect: unknown; waits: number[]; calls: number }> = [
      { name: 'card approved', kind: 'card', token: 'tok_approve', expect: { status: 'approved', providerRef: 'sbx_000001', attempts: 1 }, waits: [], calls: 1 },
      { name: 'ACH approved', kind: 'ach', token: 'tok_approve', expect: { status: 'approved', providerRef: 'sbx_000001', attempts: 1 }, waits: [], calls: 1 },
      { name: 'check is pending (clears later)', kind: 'check', token: 'tok_approve', expect: { status: 'pending', providerRef: 'sbx_000001', attempts: 1 }, waits: [], calls: 1 },
      { name: 'pending card', kind: 'card', token: 'tok_pending', expect: { status: 'pending', providerRef: 'sbx_000001', attempts: 1 }, waits: [], calls: 1 },
      {
        name: 'credit denied', kind: 'card', token: 'tok_decline',
        expect: { code: 'PAYMENT_DECLINED', status: 402, details: { reason: 'credit_denied', providerRef: 'sbx_000001' } }, waits: [], calls: 1,
      },
      {
        name: 'incorrect card information', kind: 'card', token: 'tok_invalid',
        expect: { code: 'PAYMENT_DECLINED', status: 402, details: { reason: 'card_invalid', providerRef: 'sbx_000001' } }, waits: [], calls: 1,
      },
      {
        name: 'unknown token', kind: 'ach', token: 'tok_whatever',
        expect: { code: 'PAYMENT_DECLINED', status: 402, details: { reason: 'unknown_token', providerRef: 'sbx_000001' } }, waits: [], calls: 1,
      },
      { name: 'link fails once, second attempt approved', kind: 'card', token: 'tok_linkfail_1', expect: { status: 'approved', providerRef: 'sbx_000001', attempts: 2 }, waits: [100], calls: 2 },
      {
        name: 'link fails three times: gives up after three attempts', kind: 'card', token: 'tok_linkfail_3',
        expect: { code: 'PAYMENT_LINK_FAILED', status: 502, details: { attempts: 3, paymentId: 'PAYMENT_ID' } }, waits: [100, 200], calls: 3,
      },
      { name: 'answer lost once: the retry finds the same charge', kind: 'card', token: 'tok_lost_response', expect: { status: 'approved', providerRef: 'sbx_000001', attempts: 2 }, waits: [100], calls: 2 },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const r = req(c.kind, c.token);
        const want = JSON.parse(JSON.stringify(c.expect).replace('PAYMENT_ID', r.paymentId));
        expect(await outcome(chargeWithRetry(sandbox, r, { attempts: 3, backoffMs: 100, sleep }))).to.deep.equal(want);
        expect(waits).to.deep.equal(c.waits);
        const charged = sandbox.payments();
        if (c.token === 'tok_linkfail_3') {
          expect(charged).to.deep.equal([]);
        } else {
          expect(charged).to.have.length(1); // never charged twice, whatever the retries
          expect(charged[0]).to.deep.include({ paymentId: r.paymentId, amount: 50_000, authorizeCalls: c.calls });
        }
      });
    }

    it('retries as often as configured', async () => {
      const r = req('card', 'tok_linkfail_3');
      expect(await outcome(chargeWithRetry(sandbox, r, { attempts: 4, backoffMs: 10, sleep }))).to.deep.equal({ status: 'approved', providerRef: 'sbx_000001', attempts: 4 });
      expect(waits).to.deep.equal([10, 20, 40]);
    });

    it('does not retry errors that are not link failures', async () => {
      let calls = 0;
      const buggy: PaymentProvider = {
        name: 'buggy', unitMills: 1, checkout: { methods: ['card'] },
        authorize: async () => {
          calls += 1;
          throw new TypeError('bug in the adapter');
        },
        poll: async () => ({ status: 'pending' }),
        void: async () => undefined,
        capture: async () => undefined,
        refund: async () => ({ refundRef: "none" }),
      };
      let thrown: unknown;
      await chargeWithRetry(buggy, req('card', 'x'), { sleep }).catch((e) => (thrown = e));
      expect(thrown).to.be.instanceOf(TypeError);
      expect(calls).to.equal(1);
    });

    it('reports a link that is down with the last failure in the message', async () => {
      const down: PaymentProvider = {
        name: 'down', unitMills: 1, checkout: { methods: ['card'] },
        authorize: async () => {
          throw new PaymentLinkError('connect ECONNREFUSED 10.0.0.9:443');
        },
        poll: async () => ({ status: 'pending' }),
        void: async () => undefined,
        capture: async () => undefined,
        refund: async () => ({ refundRef: "none" }),
      };
      let thrown: VbiError | undefined;
      await chargeWithRetry(down, req('card', 'x'), { sleep }).catch((e) => (thrown = e));
      expect(thrown?.code).to.equal('PAYMENT_LINK_FAILED');
      expect(thrown?.kind).to.equal('internal');
      expect(thrown?.message).to.include('after 3 attempts').and.include('ECONNREFUSED');
      expect(waits).to.deep.equal([250, 500]);
    });

    const badRequests: Array<[string, AuthorizeRequest, string]> = [
      ['a float amount', { paymentId: 'p1', amount: 10.5, method: { kind: 'card', token: 'tok_approve' } }, 'INVALID_AMOUNT'],
      ['a zero amount', { paymentId: 'p1', amount: 0, method: { kind: 'card', token: 'tok_approve' } }, 'INVALID_AMOUNT'],
      ['an empty payment id', { paymentId: '', amount: 10, method: { kind: 'card', token: 'tok_approve' } }, 'BAD_REQUEST'],
      ['an unknown method', { paymentId: 'p1', amount: 10, method: { kind: 'cash' as 'card', token: 'tok_approve' } }, 'BAD_REQUEST'],
      ['an empty token', { paymentId: 'p1', amount: 10, method: { kind: 'card', token: '' } }, 'BAD_REQUEST'],
    ];
    for (const [name, r, code] of badRequests) {
      it(`refuses ${name} before calling the processor`, async () => {
        expect(await outcome(chargeWithRetry(sandbox, r, { sleep }))).to.deep.include({ code });
        expect(sandbox.payments()).to.deep.equal([]);
      });
    }
  });

  describe('pending payments (checks through the lockbox)', () => {
    it('clears on the configured poll', async () => {
      const { providerRef } = await chargeWithRetry(sandbox, req('check', 'tok_pending'), { sleep });
      expect(await sandbox.poll(providerRef)).to.deep.equal({ status: 'pending' });
      expect(await sandbox.poll(providerRef)).to.deep.equal({ status: 'approved' });
      expect(await sandbox.poll(providerRef)).to.deep.equal({ status: 'approved' });
    });

    it('clears at once when the lockbox reports it', async () => {
      const { providerRef } = await chargeWithRetry(sandbox, req('check', 'tok_approve'), { sleep });
      sandbox.clear(providerRef);
      expect(await sandbox.poll(providerRef)).to.deep.equal({ status: 'approved' });
    });

    it('a returned check is declined', async () => {
      const bounce = await chargeWithRetry(sandbox, req('check', 'tok_bounce'), { sleep });
      expect(bounce.status).to.equal('pending');
      await sandbox.poll(bounce.providerRef);
      expect(await sandbox.poll(bounce.providerRef)).to.deep.equal({ status: 'declined', reason: 'check_returned' });
      const manual = await chargeWithRetry(sandbox, req('check', 'tok_pending'), { sleep });
      sandbox.bounce(manual.providerRef);
      expect(await sandbox.poll(manual.providerRef)).to.deep.equal({ status: 'declined', reason: 'check_returned' });
    });

    it('an authorize retried after approval answers the current status, once charged', async () => {
      const r = req('check', 'tok_pending');
      const first = await sandbox.authorize(r);
      sandbox.clear(first.providerRef);
      expect(await sandbox.authorize(r)).to.deep.equal({ status: 'approved', providerRef: first.providerRef });
      expect(sandbox.payments()).to.have.length(1);
      let thrown: unknown;
      await sandbox.authorize({ ...r, amount: r.amount + 1 }).catch((e) => (thrown = e));
      expect(String(thrown)).to.match(/another amount or method/);
    });

    it('refuses to poll an unknown reference', async () => {
      let thrown: unknown;
      await sandbox.poll('sbx_999999').catch((e) => (thrown = e));
      expect(String(thrown)).to.match(/no payment with reference/);
    });
  });
});
