/**
 * npm run bench -- http [--seconds N] [--mailers 1,4,16,64] [--batches 1,50] [--modules 1,2] [--meters N] [--profile DIR]
 *
 * The benchmark drives the path mailers take: the SDK over HTTP against the real service
 * program (scripts/bench-http.ts). Not a test: numbers depend on the machine. Quote the output,
 * don't assert on it.
 */
import { benchHttp } from './bench-http';
import { runMain } from '@vbi/core/cli/run-main';

async function main(): Promise<void> {
  if (process.argv[2] !== 'http') {
    process.stderr.write('usage: npm run bench -- http [--seconds N] [--mailers 1,4,16,64] [--batches 1,50] [--modules 1,2] [--meters N] [--profile DIR]\n');
    process.exit(2);
  }
  await benchHttp();
}

runMain(main);
