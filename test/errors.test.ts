import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, UserError, InternalError, vbiError } from '../src/errors';

describe('error registry', () => {
  const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'errors.md'), 'utf8');

  it('documents every code in docs/errors.md', () => {
    const missing = Object.keys(ERROR_CODES).filter((c) => !doc.includes(`\`${c}\``));
    expect(missing).to.deep.equal([]);
  });

  it('maps user errors to 4xx and internal errors to 5xx or 409', () => {
    for (const [code, e] of Object.entries(ERROR_CODES)) {
      if (e.kind === 'user') expect(e.status, code).to.be.within(400, 499);
      else expect([409, 500, 502, 503, 504], code).to.include(e.status);
      const err = vbiError(code as keyof typeof ERROR_CODES);
      expect(err).to.be.instanceOf(e.kind === 'user' ? UserError : InternalError);
      expect(err.toJSON()).to.deep.include({ code });
    }
  });
});
