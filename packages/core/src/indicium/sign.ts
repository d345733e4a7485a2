import { IndiciumFields } from './fields';
import { indiciumDigest } from './digest';
import { assembleIndicium, encodeIndiciumData } from './layout';

/** A finished indicium: the bytes to print, and its parts. */
export interface SignedIndicium {
  fields: IndiciumFields;
  /** The signed bytes. */
  data: Buffer;
  signature: Buffer;
  /** data || signature: what the DataMatrix carries. */
  indicium: Buffer;
  /** indiciumDigest(data): the key of the indicium log and of duplicate detection. */
  digest: Buffer;
}

/**
 * Encodes `fields`, has `sign` sign the bytes and assembles the indicium. In the PSD engine:
 *
 *   signIndicium({ fields, sign: (data) => hsm.signWithWrappedKey({ wrappedKey, algorithm: fields.algorithm, data }) })
 *
 * Throws INDICIUM_FIELD_INVALID before anything is signed, and INDICIUM_MALFORMED if the
 * signature does not have the algorithm's length.
 */
export async function signIndicium(req: { fields: IndiciumFields; sign: (data: Buffer) => Promise<Buffer> }): Promise<SignedIndicium> {
  return signEncoded({ fields: req.fields, data: encodeIndiciumData(req.fields), sign: req.sign });
}

/** signIndicium for fields already encoded (and so checked) by encodeIndiciumData. */
export async function signEncoded(req: { fields: IndiciumFields; data: Buffer; sign: (data: Buffer) => Promise<Buffer> }): Promise<SignedIndicium> {
  const signature = await req.sign(req.data);
  const indicium = assembleIndicium(req.data, signature);
  return { fields: req.fields, data: req.data, signature, indicium, digest: indiciumDigest(req.data) };
}
