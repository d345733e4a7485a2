import { expect } from 'chai';
import { parseBatchList } from '@vbi/client/client/batch-list';
import { parseCsv } from '@vbi/client/client/csv';

describe('client CSV and mailing lists (vbi print-batch)', () => {
  const cases: Array<[string, string, string[][]]> = [
    ['plain', 'a,b,c\n1,2,3\n', [['a', 'b', 'c'], ['1', '2', '3']]],
    ['CRLF and no final newline', 'a,b\r\n1,2', [['a', 'b'], ['1', '2']]],
    ['quoted comma, quote and newline', 'a,b\n"x, y","say ""hi""\nthere"\n', [['a', 'b'], ['x, y', 'say "hi"\nthere']]],
    ['empty fields', 'a,b,c\n,,\n', [['a', 'b', 'c'], ['', '', '']]],
    ['BOM and blank lines', '\ufeffa\n\n1\n\n', [['a'], ['1']]],
    ['quotes inside an unquoted field stay', 'a\nx"y\n', [['a'], ['x"y']]],
  ];
  for (const [name, text, rows] of cases) {
    it(`parses: ${name}`, () => expect(parseCsv(text)).to.deep.equal(rows));
  }

  it('refuses an unterminated quote and text after a closing quote', () => {
    expect(() => parseCsv('a\n"open\n')).to.throw(/not closed/).with.property('code', 'BAD_REQUEST');
    expect(() => parseCsv('a\n"x"y\n')).to.throw(/after a closing quote/);
  });

  it('a mailing list: rate items, fixed postage, defaults, file names', () => {
    const rows = parseBatchList([
      'To,ZIP,weight,class,zone,postage,file',
      '"Jane Doe|1 Elm St|Springfield IL 62701",62701-0001,1,,,,',
      '"Bob|2 Oak Ave|Austin TX 78701",78701,2.5,priority-mail,4,,bob',
      '"Ann|3 Pine Rd|Boston MA 02108",02108,,,,0.68,',
    ].join('\n'), { mailClass: 'first-class-letter' });
    expect(rows).to.deep.equal([
      { record: 1, deliveryAddress: ['Jane Doe', '1 Elm St', 'Springfield IL 62701'], item: { destinationZip: '627010001', rate: { mailClass: 'first-class-letter', weightOz: 1 } }, file: '0001' },
      { record: 2, deliveryAddress: ['Bob', '2 Oak Ave', 'Austin TX 78701'], item: { destinationZip: '78701', rate: { mailClass: 'priority-mail', weightOz: 2.5, zone: 4 } }, file: 'bob' },
      { record: 3, deliveryAddress: ['Ann', '3 Pine Rd', 'Boston MA 02108'], item: { destinationZip: '02108', postage: 680 }, file: '0003' },
    ]);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['unknown column', 'to,zip,weight,colour\nA,12345,1,red', /unknown CSV column 'colour'/],
    ['no zip column', 'to,weight\nA,1', /no 'zip' column/],
    ['bad zip', 'to,zip,weight\nA,1234,1', /record 1, column zip/],
    ['neither weight nor postage', 'to,zip\nA,12345', /give a weight or a postage/],
    ['postage with 4 decimals', 'to,zip,postage\nA,12345,0.6801', /more than 3 decimals/],
    ['bad weight', 'to,zip,weight\nA,12345,1oz', /column weight/],
    ['zone out of range', 'to,zip,weight,zone\nA,12345,1,10', /column zone/],
    ['file name with a slash', 'to,zip,weight,file\nA,12345,1,../x', /column file/],
    ['duplicate file name', 'to,zip,weight,file\nA,12345,1,x\nB,12345,1,x', /used twice/],
    ['ragged record', 'to,zip,weight\nA,12345', /2 fields, the header has 3/],
    ['header only', 'to,zip,weight\n', /no records/],
  ];
  for (const [name, text, message] of bad) {
    it(`refuses: ${name}`, () => {
      expect(() => parseBatchList(text, { mailClass: 'first-class-letter' })).to.throw(message).with.property('code', 'BAD_REQUEST');
    });
  }
});
