import { DynamicPasswordInput, dynamicPasswordInput } from '@vbi/core/protocol/messages';
import { hmacSha256 } from './client-crypto';

/**
 * The dynamic password of the secure on-line printing claims (continuous link): base64 HMAC-SHA256(HMK, dynamicPasswordInput(d)). Good for
 * one heartbeat, or one print of `postage` to `destinationZip`, at one counter value.
 */
export function dynamicPassword(hmk: Buffer, d: DynamicPasswordInput): string {
  return hmacSha256(hmk, dynamicPasswordInput(d)).toString('base64');
}
