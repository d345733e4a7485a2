import { IndiciumContext } from '../module/commands/create-indicium';

/**
 * Placeholder indicium data (until the indicium layout of src/indicium/ is wired in):
 * "VBI0" | meter id (len u8 + ASCII) | sequence u64 BE | postage u64 BE | AR u64 BE | DR u64 BE |
 * time ms u64 BE | certificate serial (len u8 + hex ASCII). Documented in docs/ledger.md.
 */
export function placeholderIndiciumData(ctx: IndiciumContext): Buffer {
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    return b;
  };
  const str = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s, 'ascii')]);
  return Buffer.concat([
    Buffer.from('VBI0', 'ascii'), str(ctx.pkg.meterId), u64(ctx.sequence), u64(ctx.postage),
    u64(ctx.pkg.ascendingRegister), u64(ctx.pkg.descendingRegister), u64(ctx.now), str(ctx.pkg.indiciumCertSerial),
  ]);
}
