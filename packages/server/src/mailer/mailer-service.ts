import { MailerCore, MailerOptions } from './mailer-core';
import { MailerPrinting } from './mailer-printing';
import { MailerPurchases } from './mailer-purchases';
import { MailerRegistration } from './mailer-registration';
import { MailerSessions } from './mailer-sessions';

export { DEFAULT_USER_SECRETS_LIFETIME_MS } from './mailer-core';
export type { MailerOptions } from './mailer-core';

/**
 * The mailer's service (docs/protocol.md) on the transaction engine, one section a file:
 * registration (mailer-registration.ts), purchases and refunds (mailer-purchases.ts), sessions
 * and the meter's state (mailer-sessions.ts), printing (mailer-printing.ts); what they share is
 * MailerCore. Every step that touches a package is one module dispatch in one database
 * transaction; the sections reach the token only through the ledger (a dispatch, or a check
 * that changes nothing).
 */
export class MailerService {
  private readonly core: MailerCore;
  readonly registration: MailerRegistration;
  readonly purchases: MailerPurchases;
  readonly sessions: MailerSessions;
  readonly printing: MailerPrinting;

  constructor(opts: MailerOptions) {
    this.core = new MailerCore(opts);
    this.registration = new MailerRegistration(this.core);
    this.purchases = new MailerPurchases(this.core);
    this.sessions = new MailerSessions(this.core);
    this.printing = new MailerPrinting(this.core);
  }

  get heartbeatIntervalMs(): number {
    return this.core.heartbeatIntervalMs;
  }

  get sessionTimeoutMs(): number {
    return this.core.sessionTimeoutMs;
  }

  readonly modules = (): ReturnType<MailerCore['modules']> => this.core.modules();
  readonly authenticate: MailerCore['authenticate'] = (env) => this.core.authenticate(env);

  // registration
  readonly register: MailerRegistration['register'] = (req) => this.registration.register(req);
  readonly challenge: MailerRegistration['challenge'] = (req) => this.registration.challenge(req);
  readonly complete: MailerRegistration['complete'] = (req) => this.registration.complete(req);

  // purchases and refunds
  readonly purchase: MailerPurchases['purchase'] = (env, idem) => this.purchases.purchase(env, idem);
  readonly settle: MailerPurchases['settle'] = (env) => this.purchases.settle(env);
  readonly capturePayment: MailerPurchases['capturePayment'] = (id) => this.purchases.capturePayment(id);
  readonly capturePayments: MailerPurchases['capturePayments'] = (limit) => this.purchases.capturePayments(limit);
  readonly refund: MailerPurchases['refund'] = (env) => this.purchases.refund(env);
  readonly refundAndClose: MailerPurchases['refundAndClose'] = (req) => this.purchases.refundAndClose(req);
  readonly payRefunds: MailerPurchases['payRefunds'] = () => this.purchases.payRefunds();

  // sessions and the meter's state
  readonly balance: MailerSessions['balance'] = (env) => this.sessions.balance(env);
  readonly history: MailerSessions['history'] = (env) => this.sessions.history(env);
  readonly openSession: MailerSessions['openSession'] = (env) => this.sessions.openSession(env);
  readonly closeSession: MailerSessions['closeSession'] = (env) => this.sessions.closeSession(env);
  readonly heartbeat: MailerSessions['heartbeat'] = (req) => this.sessions.heartbeat(req);
  readonly rekey: MailerSessions['rekey'] = (env) => this.sessions.rekey(env);
  readonly resync: MailerSessions['resync'] = (req) => this.sessions.resync(req);

  // printing
  readonly print: MailerPrinting['print'] = (env, idem) => this.printing.print(env, idem);
  readonly correction: MailerPrinting['correction'] = (env, idem) => this.printing.correction(env, idem);
  readonly redeliver: MailerPrinting['redeliver'] = (env) => this.printing.redeliver(env);
}
