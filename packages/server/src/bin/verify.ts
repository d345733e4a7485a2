import { runMain } from '@vbi/core/cli/run-main';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isVbiError, vbiError } from '@vbi/core/errors';
import { directoryCertificateLookup } from '@vbi/core/indicium/cert-directory';
import { readIndiciumFromLabel } from '@vbi/core/indicium/decoder/label-reader';
import { formatMills } from '@vbi/core/indicium/render/human-readable';
import { IndiciumVerifier, VerifyResult } from '@vbi/core/indicium/verify';

/**
 * Offline indicium verification:  node packages/server/dist/src/bin/verify.js verify <image|pdf> [options]
 *
 *   verify label.png  --root root.pem [--root ...] [--cert cert.der|--cert-dir DIR] [--intermediate ca.pem] [--json]
 *   verify label.pdf  ...  (page 1 rendered at 300 dpi with pdftoppm)
 *   verify --payload BASE64 ...
 *
 * The barcode is read with dmtxread (libdmtx), independent of the bwip-js encoder. Prints the
 * result code on the first line, then the reason and the fields. Exit status: 0 VALID only,
 * 1 any other result (or no barcode found), 2 usage or environment errors.
 */
const USAGE = `usage: verify <label.png|label.pdf> | --payload BASE64
  --root FILE          trusted root certificate (PEM or DER), repeatable, required
  --cert FILE          the indicium key certificate (PEM or DER)
  --cert-dir DIR       or a directory of certificates to find it by serial
  --intermediate FILE  intermediate CA certificate, repeatable
  --json               print the result as JSON`;

type Out = (s: string) => void;

export async function runVerifyCli(argv: string[], out: Out = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const { positionals, values } = parse(argv);
  const [command, file, ...extra] = positionals;
  if (values.help) return out(USAGE), 0;
  if (command !== 'verify' || extra.length || (file === undefined) === (values.payload === undefined)) {
    throw vbiError('BAD_REQUEST', `give either an image file or --payload\n${USAGE}`);
  }
  if (!values.root?.length) throw vbiError('BAD_REQUEST', `--root is required\n${USAGE}`);

  const verifier = new IndiciumVerifier({
    trustAnchors: values.root.map((f) => readFileSync(f)),
    intermediates: (values.intermediate ?? []).map((f) => readFileSync(f)),
    certificates: values['cert-dir'] ? directoryCertificateLookup(values['cert-dir']) : undefined,
  });
  const indicium = values.payload !== undefined ? decodeBase64(values.payload) : await readIndiciumFromLabel(file!);
  const result = await verifier.verify({ indicium, certificate: values.cert ? readFileSync(values.cert) : undefined });
  out(values.json ? JSON.stringify(result, null, 2) : formatResult(result));
  return result.code === 'VALID' ? 0 : 1;
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        payload: { type: 'string' }, root: { type: 'string', multiple: true }, cert: { type: 'string' },
        'cert-dir': { type: 'string' }, intermediate: { type: 'string', multiple: true }, json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    });
  } catch (e) {
    throw vbiError('BAD_REQUEST', `${(e as Error).message}\n${USAGE}`);
  }
}

function decodeBase64(s: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw vbiError('BAD_REQUEST', '--payload is not base64');
  return Buffer.from(s, 'base64');
}


function formatResult(r: VerifyResult): string {
  const lines = [r.code, `reason: ${r.reason}`];
  if (r.fields) {
    const f = r.fields;
    lines.push(
      `item: ${f.itemType}  value: ${formatMills(f.postage)} (${f.postage} mills)  rate: ${f.rateCategory} (table ${f.rateTableId} v${f.rateTableVersion})`,
      `meter: ${f.meterId}  sequence: ${f.sequence}  software: ${f.softwareId}`,
      `date of mailing: ${f.dateOfMailing}  from ZIP: ${f.originZip}  to ZIP: ${f.destinationZip || '-'}`,
      `registers: ascending ${f.ascendingRegister}  descending ${f.descendingRegister} (mills)`,
      `certificate serial: ${f.certSerial}  algorithm: ${f.algorithm}`,
      `digest: ${r.digest}`,
    );
  }
  if (r.certificate) lines.push(`certificate: ${r.certificate.subject.replace(/\n/g, ', ')} valid ${r.certificate.validFrom} .. ${r.certificate.validTo}`);
  if (r.firstSeen) lines.push(`first seen: ${r.firstSeen.location} at ${r.firstSeen.seenAt.toISOString()}`);
  return lines.join('\n');
}

if (require.main === module) {
  runMain(() => runVerifyCli(process.argv.slice(2)), { failureCode: (e) => (isVbiError(e, 'BARCODE_NOT_FOUND') ? 1 : 2) });
}
