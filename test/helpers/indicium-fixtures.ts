import { IndiciumFields } from '@vbi/core/indicium/fields';

/** A typical first-class letter indicium; `over` replaces fields. */
export function sampleFields(over: Partial<IndiciumFields> = {}): IndiciumFields {
  return {
    algorithm: 'ec-p256',
    itemType: 'postage',
    certSerial: '0a1b2c3d4e5f6071',
    meterId: 'M-000042',
    ascendingRegister: 12_345_680,
    descendingRegister: 987_654_320,
    postage: 680,
    dateOfMailing: '2026-01-15',
    originZip: '20260',
    destinationZip: '10001123412',
    rateCategory: 'FCL',
    softwareId: 'VBI01',
    sequence: 1_234,
    rateTableId: 7,
    rateTableVersion: 3,
    ...over,
  };
}

/** Today's date (UTC) as YYYY-MM-DD, shifted by `days`. */
export function isoDay(days = 0, from = new Date()): string {
  return new Date(from.getTime() + days * 86_400_000).toISOString().slice(0, 10);
}
