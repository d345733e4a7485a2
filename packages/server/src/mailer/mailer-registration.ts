import { createHash, randomBytes } from 'node:crypto';
import { isVbiError, vbiError } from '@vbi/core/errors';
import { registerUserSecrets, signRegistrationChallenge } from '../module/commands/registration';
import type { LicenceOutcome } from '../licensing/licence-queue';
import { DEFAULT_USER_SECRETS_LIFETIME_MS, MailerCore } from './mailer-core';
import type { ModuleEntry } from './module-directory';
import { deleteAccount, setReturnAddress } from '../db/repositories/accounts';
import { completeRegistration, insertLicenceRequest, lockOpenRegistration } from '../db/repositories/licence-queue';
import { meterExists } from '../db/repositories/meters';

/** Registration tokens are kept only as their SHA-256. */
function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Registration (docs/protocol.md 1, WO 01/29778 "registration/authorization state"): 1a an
 * account and a certified meter from the MeterGen pool, 1b the module proves itself, 1c the
 * client's secrets into the meter's package and the licence request to the authority.
 */
export class MailerRegistration {
  constructor(private readonly core: MailerCore) {}

  /** 1a: account, license request, a certified meter from the MeterGen pool. */
  async register(req: { name: string; licensingZip: string; returnAddress: string[] }): Promise<{ registrationId: number; registrationToken: string; accountId: number; meterId: string; modules: ModuleEntry[] }> {
    // names and addresses are compared and printed: one Unicode form (NFC)
    const name = req.name.normalize('NFC');
    const returnAddress = req.returnAddress.map((l) => l.normalize('NFC'));
    const accountId = await this.core.ledger.createAccount({ name, licensingZip: req.licensingZip });
    await setReturnAddress(this.core.db, accountId, returnAddress);
    let meterId: string;
    try {
      try {
        ({ meterId } = await this.core.ledger.assignMeter({ accountId }));
      } catch (e) {
        if (!isVbiError(e, 'NO_METER_AVAILABLE') || !this.core.opts.replenishMeters) throw e;
        await this.core.opts.replenishMeters();
        ({ meterId } = await this.core.ledger.assignMeter({ accountId }));
      }
    } catch (e) {
      // no meter was assigned: a refused registration leaves no account behind
      await deleteAccount(this.core.db, accountId).catch(() => undefined);
      throw e;
    }
    void this.core.opts.replenishMeters?.().catch(() => undefined);
    const registrationToken = randomBytes(16).toString('hex');
    const requestId = await insertLicenceRequest(this.core.db, { accountId, meterId, licensingZip: req.licensingZip, tokenHash: tokenHash(registrationToken) });
    return { registrationId: requestId, registrationToken, accountId, meterId, modules: await this.core.modules() };
  }

  /** 1b: the module signs the client's nonce with its identity key. */
  async challenge(req: { meterId: string; moduleSerial: string; clientNonce: string }): Promise<ModuleEntry & { moduleSerial: string; signature: string }> {
    if (!(await meterExists(this.core.db, req.meterId))) throw vbiError('UNKNOWN_METER', `no meter ${req.meterId}`);
    const entry = (await this.core.modules()).find((m) => m.serial === req.moduleSerial);
    if (!this.core.ledger.modules().some((m) => m.serial === req.moduleSerial)) throw vbiError('UNKNOWN_MODULE', `no module ${req.moduleSerial} in this service`);
    if (!entry) throw vbiError('NO_MODULE', `module ${req.moduleSerial} is not available`);
    const nonce = Buffer.from(req.clientNonce, 'base64');
    if (nonce.length < 16 || nonce.length > 64) throw vbiError('BAD_REQUEST', 'clientNonce must be 16 to 64 bytes');
    const signature = await this.core.ledger.onModule(req.moduleSerial, signRegistrationChallenge({ meterId: req.meterId, clientNonce: req.clientNonce, transportKeySpki: entry.transportKey }));
    return { ...entry, moduleSerial: entry.serial, signature: signature.toString('base64') };
  }

  /**
   * 1c: HMK and password secret into the package, meter active, first challenge. Once that
   * committed, the meter's licence request goes to the licensing authority (docs/licensing.md)
   * before the answer, which says where the licence stands: a meter prints only once licensed.
   */
  async complete(req: { meterId: string; moduleSerial: string; registrationToken: string; encryptedHmk: string; encryptedPasswordSecret: string }): Promise<{ challenge: string; hmkProof: string; registers: { ascending: number; descending: number }; licence: LicenceOutcome }> {
    const out = await this.core.ledger.run<{ challenge: Buffer; hmkProof: Buffer }, number, number>({
      meterId: req.meterId, moduleSerial: req.moduleSerial, type: 'registration',
      // only the meter step 1a handed out, to the holder of its token, once
      before: async (trx) => {
        const lr = await lockOpenRegistration(trx, req.meterId, tokenHash(req.registrationToken));
        if (!lr) throw vbiError('REGISTRATION_UNKNOWN', `no open registration for meter ${req.meterId} with that token`);
        return lr.request_id;
      },
      after: async (trx, _o, at, requestId) => {
        // the licence request is due at the authority from now on (docs/licensing.md)
        await completeRegistration(trx, requestId, at);
        return requestId;
      },
      execute: (pkg, ctx) => registerUserSecrets({
        encryptedHmk: Buffer.from(req.encryptedHmk, 'base64'), encryptedPasswordSecret: Buffer.from(req.encryptedPasswordSecret, 'base64'),
        userSecretsLifetimeMs: this.core.opts.userSecretsLifetimeMs ?? DEFAULT_USER_SECRETS_LIFETIME_MS,
      })(pkg, ctx),
      details: () => ({ moduleSerial: req.moduleSerial }),
    });
    const requestId = out.stored;
    // the registration is committed and answered whatever the authority does: a failure here
    // leaves the request pending for the licensing pass
    const licence: LicenceOutcome = this.core.opts.licensing
      ? await this.core.opts.licensing.process(requestId).catch((e) => {
        this.core.opts.log?.(`licence request ${requestId}: left for the next licensing pass: ${(e as Error).message}`);
        return { status: 'pending' as const };
      })
      : { status: 'pending' };
    return {
      challenge: out.result.challenge.toString('base64'), hmkProof: out.result.hmkProof.toString('base64'),
      registers: { ascending: out.package.ascendingRegister, descending: out.package.descendingRegister },
      licence,
    };
  }
}
