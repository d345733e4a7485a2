import { testLibrary } from './hsm';
import type { KnownModule } from '@vbi/client/client/client-state';
import { constants, createHmac, publicEncrypt, randomBytes, createPublicKey } from 'node:crypto';
import {
  Operation, OperationalRequest, RegisterEcho, dynamicPasswordInput, passwordSecret, requestMacInput,
} from '@vbi/core/protocol/messages';

/**
 * A minimal protocol client for the server tests that need to misbehave on purpose (replays,
 * stale challenges, tampered bodies): it builds messages from packages/core/src/protocol/messages.ts directly.
 * The real client is packages/client/src/client/.
 */
export class RawClient {
  meterId = '';
  moduleSerial = '';
  /** The modules as registration listed them (serial, transport key, identity certificate chain). */
  modules: KnownModule[] = [];
  transportKey = Buffer.alloc(0);
  hmk = randomBytes(32);
  challenge = '';
  registers: RegisterEcho = { ascending: 0, descending: 0 };
  counter = 0;

  constructor(readonly url: string) {}

  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
    const r = await fetch(`${this.url}${path}`, { method, headers: { 'content-type': 'application/json', ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  }

  encrypt(secret: Buffer): string {
    const key = createPublicKey({ key: this.transportKey, format: 'der', type: 'spki' });
    return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: testLibrary().profile.oaepHash }, secret).toString('base64');
  }

  /** Steps 1a and 1c; returns the 1c answer. */
  async register(password: string, name = 'Raw Mailer', licensingZip = '20260'): Promise<Record<string, any>> {
    const reg = await this.call('POST', '/v1/registrations', { name, licensingZip, returnAddress: ['Raw Mailer', '1 Test St', 'Washington DC 20260'] });
    if (reg.status !== 201) throw new Error(`register: ${JSON.stringify(reg.json)}`);
    this.meterId = reg.json.meterId;
    this.modules = reg.json.modules;
    this.moduleSerial = reg.json.modules[0].serial;
    this.transportKey = Buffer.from(reg.json.modules[0].transportKey, 'base64');
    const done = await this.call('POST', `/v1/registrations/${this.meterId}/complete`, {
      moduleSerial: this.moduleSerial, registrationToken: reg.json.registrationToken, encryptedHmk: this.encrypt(this.hmk), encryptedPasswordSecret: this.encrypt(passwordSecret(password, this.meterId)),
    });
    if (done.status !== 200) throw new Error(`complete: ${JSON.stringify(done.json)}`);
    this.challenge = done.json.challenge;
    this.registers = done.json.registers;
    return done.json;
  }

  envelope<B>(op: Operation, body: B): OperationalRequest<B> {
    const unsigned = { meterId: this.meterId, op, challenge: this.challenge, registers: this.registers, body };
    const mac = createHmac('sha256', this.hmk).update(requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>)).digest('base64');
    return { ...unsigned, mac };
  }

  /** Sends an envelope; on success adopts the module's new challenge and registers. */
  async send(path: string, env: OperationalRequest<unknown>, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
    const r = await this.call('POST', path, env, headers);
    const resp = r.json?.authorization ?? r.json;
    if (r.status === 200 && resp?.challenge) {
      this.challenge = resp.challenge;
      this.registers = r.json.registers ?? resp.registers;
    }
    return r;
  }

  op<B>(path: string, op: Operation, body: B, headers: Record<string, string> = {}) {
    return this.send(path, this.envelope(op, body), headers);
  }

  dynamicPassword(sessionId: string, purpose: 'heartbeat' | 'print', extra: { destinationZip?: string; postage?: number } = {}) {
    const counter = ++this.counter;
    const clientTime = Date.now();
    const dp = createHmac('sha256', this.hmk).update(dynamicPasswordInput({ meterId: this.meterId, sessionId, counter, clientTime, purpose, ...extra })).digest('base64');
    return { counter, clientTime, dynamicPassword: dp };
  }

  /** A genuine print dynamic password for a counter of the caller's choosing (e.g. one already used). */
  dynamicPasswordFor(sessionId: string, counter: number, clientTime: number, extra: { destinationZip: string; postage: number }): string {
    return createHmac('sha256', this.hmk).update(dynamicPasswordInput({ meterId: this.meterId, sessionId, counter, clientTime, purpose: 'print', ...extra })).digest('base64');
  }
}
