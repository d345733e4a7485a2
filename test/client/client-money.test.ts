import { expect } from 'chai';
import { parseMills } from '@vbi/client/client/money';

describe('client money parsing (decimal currency to integer mills, no floats)', () => {
  const good: Array<[string, number]> = [
    ['20.00', 20_000], ['20', 20_000], ['0.5', 500], ['0.68', 680], ['1.235', 1_235], ['0.001', 1], ['007.10', 7_100],
    ['$3.00', 3_000], [' 12.5 ', 12_500], ['20.', 20_000], ['0.29', 290], ['1.1', 1_100], ['999999999.999', 999_999_999_999],
    ['1000000000', 1_000_000_000_000],
  ];
  for (const [text, mills] of good) {
    it(`'${text}' -> ${mills}`, () => expect(parseMills(text)).to.equal(mills));
  }

  const bad = ['20.0001', '0.0005', '-1', '+1', '1e3', '1,000.00', '', '.5', 'abc', '0', '0.000', '1.2.3', '1000000000.001', '12345678901234', 'NaN', 'Infinity'];
  for (const text of bad) {
    it(`'${text}' is refused (INVALID_AMOUNT)`, () => {
      expect(() => parseMills(text)).to.throw().with.property('code', 'INVALID_AMOUNT');
    });
  }

  it('says why for too many decimals', () => {
    expect(() => parseMills('20.0001')).to.throw(/more than 3 decimals/);
  });

  it('is exact where floats are not (1.005 * 1000 = 1004.9999999999999)', () => {
    expect(Number('1.005') * 1000).not.to.equal(1_005);
    expect(parseMills('1.005')).to.equal(1_005);
    expect(parseMills('4.35')).to.equal(4_350);
  });
});
