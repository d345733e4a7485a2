import { dirname, join } from 'node:path';

/**
 * The one typeface of labels: Inconsolata (SIL Open Font License), shipped inside bwip-js, so
 * PNG and PDF output look the same on every machine without system fonts. It is monospaced
 * with an advance of 0.5 em, which the layout uses to size text without measuring.
 */
export const LABEL_FONT_FAMILY = 'Inconsolata';
/** The SVG font stack: viewers without Inconsolata fall back to another monospace face. */
export const SVG_FONT_STACK = "Inconsolata, 'DejaVu Sans Mono', 'Courier New', monospace";
export const CHAR_ADVANCE_EM = 0.5;

/** Path of the Inconsolata OpenType file in the installed bwip-js package. */
export function labelFontFile(): string {
  // bwip-js's "exports" map hides fonts/, so resolve the package entry and walk from there.
  return join(dirname(require.resolve('bwip-js')), '..', 'fonts', 'Inconsolata.otf');
}
