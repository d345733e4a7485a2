import { expect } from 'chai';
import { createHmac, randomBytes } from 'node:crypto';
import { buildEnvelope, checkResponseMac } from '@vbi/client/client/envelope';
import { buildPrintItem, priceItem } from '@vbi/client/client/print-item';
import { OperationalRequest, OperationalResponse, dynamicPasswordInput, requestMacInput, responseMacInput } from '@vbi/core/protocol/messages';
import { computePostage } from '@vbi/core/rates/postage';

/** What the module does with the bytes it receives (packages/server/src/module/commands/operational.ts), in software. */
function moduleVerifies(hmk: Buffer, wire: string): boolean {
  const req = JSON.parse(wire) as OperationalRequest;
  const mac = createHmac('sha256', hmk).update(requestMacInput(req)).digest();
  return mac.equals(Buffer.from(req.mac, 'base64'));
}

describe('client envelope and dynamic passwords (docs/protocol.md 2-4)', () => {
  const hmk = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');

  it('the MAC is HMAC-SHA256(HMK, requestMacInput) of exactly what the module parses', () => {
    const env = buildEnvelope({
      meterId: 'M-000042', op: 'purchase', challenge: 'q83vEjRWeJA=', registers: { ascending: 680, descending: 19_320 },
      body: { payment: { token: 'tok_approve', kind: 'card' }, amount: 20_000, note: undefined }, hmk,
    });
    const { mac, ...unsigned } = env;
    expect(requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>).toString('utf8')).to.equal(
      'VBI-OP-1\nrequest\n{"body":{"amount":20000,"payment":{"kind":"card","token":"tok_approve"}},"challenge":"q83vEjRWeJA=","meterId":"M-000042","op":"purchase","registers":{"ascending":680,"descending":19320}}',
    );
    const expected = createHmac('sha256', hmk).update(requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>)).digest('base64');
    expect(mac).to.equal(expected);
    const wire = JSON.stringify(env);
    expect(wire).not.to.include('note');
    expect(moduleVerifies(hmk, wire)).to.equal(true);
    expect(moduleVerifies(randomBytes(32), wire)).to.equal(false);
    // Any change on the way breaks it: body, registers, challenge, op.
    for (const edit of [
      (r: OperationalRequest) => ((r.body as { amount: number }).amount = 20_001),
      (r: OperationalRequest) => (r.registers.descending = 0),
      (r: OperationalRequest) => (r.challenge = 'AAAAAAAAAAA='),
      (r: OperationalRequest) => (r.op = 'refund'),
    ]) {
      const r = JSON.parse(wire) as OperationalRequest;
      edit(r);
      expect(moduleVerifies(hmk, JSON.stringify(r))).to.equal(false);
    }
  });

  it('key order of the body does not matter (canonical JSON), and an empty body is {}', () => {
    const a = buildEnvelope({ meterId: 'M-1', op: 'history', challenge: 'AQ==', registers: { ascending: 0, descending: 0 }, body: { a: 1, b: 2 }, hmk });
    const b = buildEnvelope({ meterId: 'M-1', op: 'history', challenge: 'AQ==', registers: { ascending: 0, descending: 0 }, body: { b: 2, a: 1 }, hmk });
    expect(a.mac).to.equal(b.mac);
    const empty = buildEnvelope({ meterId: 'M-1', op: 'balance', challenge: 'AQ==', registers: { ascending: 0, descending: 0 }, body: undefined, hmk });
    expect(empty.body).to.deep.equal({});
  });

  it('response MAC: accepted when HMAC(HMK, responseMacInput) matches, BAD_MAC for any change', () => {
    const unsigned: Omit<OperationalResponse, 'mac'> = {
      meterId: 'M-1', op: 'balance', challenge: 'AgI=', registers: { ascending: 1, descending: 2 }, result: { ascending: 1, descending: 2 },
      receipt: { meterId: 'M-1', op: 'balance', amount: 0, ascendingRegister: 1, descendingRegister: 2, sequence: 3, time: '2026-01-01T00:00:00.000Z', moduleSerial: 'S1', checkpointSeq: 4, signature: 'x' },
    };
    const mac = createHmac('sha256', hmk).update(responseMacInput(unsigned)).digest('base64');
    const response = JSON.parse(JSON.stringify({ ...unsigned, mac }));
    expect(checkResponseMac({ response, meterId: 'M-1', op: 'balance', hmk }).challenge).to.equal('AgI=');
    const changed = { ...response, registers: { ascending: 1, descending: 3 } };
    expect(() => checkResponseMac({ response: changed, meterId: 'M-1', op: 'balance', hmk })).to.throw().with.property('code', 'BAD_MAC');
    expect(() => checkResponseMac({ response, meterId: 'M-1', op: 'history', hmk }), 'answer to another op').to.throw().with.property('code', 'BAD_MAC');
    expect(() => checkResponseMac({ response: { error: 'x' }, meterId: 'M-1', op: 'balance', hmk })).to.throw().with.property('code', 'BAD_MAC');
  });

  it('a print item: dynamic password = HMAC(HMK, dynamicPasswordInput) over session, counter, time, destination and postage', () => {
    const clientTime = Date.parse('2026-03-02T15:04:05Z');
    const item = buildPrintItem({
      meterId: 'M-000042', sessionId: 'sess-1', counter: 7, clientTime, hmk,
      item: { destinationZip: '205000001', rate: { mailClass: 'first-class-letter', weightOz: 1 }, dateOfMailing: '2026-03-02' },
    });
    const quote = computePostage({ mailClass: 'first-class-letter', weightOz: 1, at: new Date(clientTime) });
    expect(item).to.deep.equal({
      counter: 7, clientTime, destinationZip: '205000001', postage: quote.postage, rate: { mailClass: 'first-class-letter', weightOz: 1 },
      itemType: 'postage', dateOfMailing: '2026-03-02', dynamicPassword: item.dynamicPassword,
    });
    const input = dynamicPasswordInput({ meterId: 'M-000042', sessionId: 'sess-1', counter: 7, clientTime, purpose: 'print', destinationZip: '205000001', postage: quote.postage });
    expect(input.toString('utf8')).to.equal(
      `VBI-OP-1\ndynamic-password\n{"clientTime":${clientTime},"counter":7,"destinationZip":"205000001","meterId":"M-000042","postage":${quote.postage},"purpose":"print","sessionId":"sess-1"}`,
    );
    expect(item.dynamicPassword).to.equal(createHmac('sha256', hmk).update(input).digest('base64'));
  });

  it('a fixed-postage item has no rate; a rate that disagrees with the given postage is refused before sending', () => {
    const item = buildPrintItem({ meterId: 'M-1', sessionId: 's', counter: 1, clientTime: Date.now(), hmk, item: { destinationZip: '20500', postage: 1_234 } });
    expect(item.postage).to.equal(1_234);
    expect(item).not.to.have.property('rate');
    expect(() => priceItem({ destinationZip: '20500', postage: 1, rate: { mailClass: 'first-class-letter', weightOz: 1 } }, new Date())).to.throw(/differs from/);
    expect(() => buildPrintItem({ meterId: 'M-1', sessionId: 's', counter: 1, clientTime: Date.now(), hmk, item: { destinationZip: '2050', postage: 1 } })).to.throw(/5, 9 or 11 digits/);
    expect(() => priceItem({ destinationZip: '20500' }, new Date())).to.throw().with.property('code', 'INVALID_AMOUNT');
  });
});
