import { createHash } from 'node:crypto';
import { vbiError } from '../../errors';
import { pngSize } from './png';

/** Standard sizes, in points (1/72 in). */
export const LABEL_SIZES = {
  /** 4 x 6 in shipping label, portrait. */
  'label-4x6': { width: 288, height: 432 },
  /** #10 business envelope, 9.5 x 4.125 in, landscape. */
  'envelope-10': { width: 684, height: 297 },
} as const;
export type LabelSize = keyof typeof LABEL_SIZES;

/** What to print on one label or envelope. */
export interface LabelRequest {
  /** The printed indicium (data || signature); the postage block text is decoded from it. */
  indicium: Buffer;
  size: LabelSize;
  /** Up to 6 lines of at most 40 characters. */
  deliveryAddress: string[];
  /** Optional, up to 5 lines of at most 40 characters. */
  returnAddress?: string[];
  /** Authorised advertising art (WO 99/41690 "Authorized Advertising Art"): a PNG approved by id. */
  art?: { id: string; png: Buffer };
  /** One line of display text (at most 40 characters), e.g. a slogan or a ticket note. */
  displayText?: string;
  /** Printed before amounts; default '$'. */
  currencySymbol?: string;
}

/** What the operator has approved. */
export interface LabelPolicy {
  /** Art id -> SHA-256 (hex) of the approved PNG. Art not listed here is refused. */
  approvedArt?: ReadonlyMap<string, string>;
}

export const MAX_LINE_CHARS = 40;
/** Printable ASCII and Latin-1 letters: what the label font draws. */
const PRINTABLE = /^[\x20-\x7e\u00a0-\u00ff]*$/;

/** Throws LABEL_INVALID naming the first problem (size, text lengths and characters, art approval). */
export function checkLabelRequest(req: LabelRequest, policy: LabelPolicy = {}): void {
  if (!Object.hasOwn(LABEL_SIZES, req.size)) bad('size', `unknown label size '${req.size}'`);
  lines('deliveryAddress', req.deliveryAddress, 1, 6);
  if (req.returnAddress !== undefined) lines('returnAddress', req.returnAddress, 0, 5);
  if (req.displayText !== undefined) lines('displayText', [req.displayText], 1, 1);
  if (req.currencySymbol !== undefined && !/^[^\s]{1,3}$/.test(req.currencySymbol)) bad('currencySymbol', 'must be 1 to 3 characters');
  if (req.art) {
    const size = pngSize(req.art.png);
    if (!size || size.width === 0 || size.height === 0 || size.width > 4000 || size.height > 4000) bad('art', 'must be a PNG of at most 4000 x 4000 pixels');
    const approved = policy.approvedArt?.get(req.art.id);
    const digest = createHash('sha256').update(req.art.png).digest('hex');
    if (approved === undefined || approved.toLowerCase() !== digest) bad('art', `art '${req.art.id}' is not authorised`);
  }
}

function lines(field: string, value: unknown, min: number, max: number): void {
  if (!Array.isArray(value) || value.length < min || value.length > max) bad(field, `must have ${min} to ${max} lines`);
  for (const line of value as unknown[]) {
    if (typeof line !== 'string' || line.length === 0 || line.length > MAX_LINE_CHARS || !PRINTABLE.test(line)) {
      bad(field, `lines must be 1 to ${MAX_LINE_CHARS} printable characters`);
    }
  }
}

function bad(field: string, message: string): never {
  throw vbiError('LABEL_INVALID', `${field}: ${message}`, { field });
}
