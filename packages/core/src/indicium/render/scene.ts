import { ModuleMatrix } from './datamatrix';

/**
 * A label as a list of drawing primitives in PostScript points (1/72 in), origin top-left.
 * One scene feeds the SVG, PNG (via SVG) and PDF renderers, so the three formats agree.
 */
export type SceneItem =
  /** One line of text; `y` is the baseline. */
  | { kind: 'text'; x: number; y: number; size: number; text: string }
  /** A DataMatrix with its top-left module at (x, y); the layout keeps its quiet zone empty. */
  | { kind: 'matrix'; x: number; y: number; module: number; matrix: ModuleMatrix }
  /** A PNG scaled into the box. */
  | { kind: 'image'; x: number; y: number; width: number; height: number; png: Buffer }
  | { kind: 'line'; x1: number; y1: number; x2: number; y2: number; width: number };

export interface Scene {
  width: number;
  height: number;
  items: SceneItem[];
}
