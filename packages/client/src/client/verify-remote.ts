import type { HttpClient } from './http';
import type { VerifyAnswer } from './wire';

/**
 * POST /v1/verify: the service's verification of an indicium (result code, fields). A mailer
 * checks its own label without recording a sighting (`record: false`), so the piece's scan in
 * the mail stream is not mistaken for a duplicate. Needs no key file.
 */
export function verifyIndiciumRemote(http: HttpClient, indicium: Buffer): Promise<VerifyAnswer> {
  return http.post<VerifyAnswer>('/v1/verify', { indicium: indicium.toString('base64'), record: false });
}
