import { VbiError } from '@vbi/core/errors';

/** The outcome of a promise as a stable code: 'OK', or the VbiError's code (anything else is rethrown). */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    if (e instanceof VbiError) return e.code;
    throw e;
  }
}
