import { writeFileSync } from 'node:fs';
import { renderLabel } from '@vbi/client/client/label-output';
import { assembleIndicium, encodeIndiciumData } from '@vbi/core/indicium/layout';
import { LabelRequest } from '@vbi/core/indicium/render/label-request';
import { sampleFields } from './indicium-fixtures';

/**
 * Entry of a throwaway bundle that test/client/client-package.test.ts builds with the client package's
 * shims and runs from inside the installed package: renders one label per format into the
 * working directory, the way the bundled `vbi print` does, and prints what happened as JSON.
 */
async function main(): Promise<void> {
  const req: LabelRequest = {
    indicium: assembleIndicium(encodeIndiciumData(sampleFields()), Buffer.alloc(64, 7)),
    size: 'label-4x6',
    deliveryAddress: ['JANE DOE', '2 ELM ST', 'SPRINGFIELD IL 62701'],
  };
  const out: Record<string, string> = {};
  for (const format of ['pdf', 'svg', 'png'] as const) {
    try {
      writeFileSync(`label.${format}`, await renderLabel(format, req));
      out[format] = 'ok';
    } catch (e) {
      out[format] = `error: ${(e as Error).message}`;
    }
  }
  process.stdout.write(JSON.stringify(out));
}

void main();
