// The map's colours in one place (plain data, no OpenLayers: the shape store, the panels and the unit tests use
// it). Some colours are reserved: they mean one thing on the map (a kind of area, a review state, a prediction,
// the selection). Classes take theirs from CLASS_PALETTE, which keeps a clear distance (CIE76 ΔE ≥
// MIN_DISTANCE) from every reserved colour and from each other (tests/palette.test.ts checks it). Colour is never
// the only cue: each reserved meaning also has its own stroke, dash, fill or mark (styles.ts), so the map reads
// the same to colour-blind eyes.

import { AREA_COLORS } from "./areas";

/** What a trained version found in the testing areas. */
export const PREDICTION_COLOR = "#FAB005";

/** The review of a trained version: right (match), wrong (false detection), missed, and found in a training
 * area where nothing is outlined (unoutlined: possibly a forgotten object). */
export const REVIEW_COLORS = {
  match: "#FFFFFF",
  false_detection: "#E64980",
  miss: "#15AABF",
  unoutlined: "#FAB005",
} as const;

/** Where to label next: the squares a trained version suggests adding as training or accuracy areas. */
export const SUGGESTION_COLOR = "#FF00FF";

/** An outline outside every area: ignored by training, drawn washed out. */
export const IGNORED_COLOR = "#ADB5BD";

/** The selection and the shape being drawn. */
export const SELECTION_COLOR = "#1864AB";

/** Every colour that means something on its own, by what it means (for the checks and for a warning when a
 * class is given one of them). */
export const RESERVED_COLORS: Record<string, string> = {
  "training areas": AREA_COLORS.training,
  "testing areas": AREA_COLORS.testing,
  "accuracy areas": AREA_COLORS.accuracy,
  "detection areas": AREA_COLORS.detection,
  predictions: PREDICTION_COLOR,
  "correct finds": REVIEW_COLORS.match,
  "false detections": REVIEW_COLORS.false_detection,
  "missed objects": REVIEW_COLORS.miss,
  "unoutlined finds": REVIEW_COLORS.unoutlined,
  "suggested areas": SUGGESTION_COLOR,
  "ignored outlines": IGNORED_COLOR,
  selection: SELECTION_COLOR,
};

/** Colours for classes, in the order new classes get them. */
export const CLASS_PALETTE = ["#F76707", "#63E6BE", "#364FC7", "#C92A2A", "#C0EB75", "#8D5524", "#FF8787", "#8A8A00", "#7A1F2B", "#74C0FC"];

/** How far apart (CIE76 ΔE in CIELAB) two colours must be to be told apart on the map at a glance. */
export const MIN_DISTANCE = 25;

/** The colour for the `index`-th class. */
export function classPaletteColor(index: number): string {
  return CLASS_PALETTE[((index % CLASS_PALETTE.length) + CLASS_PALETTE.length) % CLASS_PALETTE.length];
}

function lab(hex: string): [number, number, number] {
  const value = parseInt(hex.replace("#", ""), 16);
  const [r, g, b] = [(value >> 16) & 255, (value >> 8) & 255, value & 255].map((c) => {
    const s = c / 255;
    return s > 0.04045 ? ((s + 0.055) / 1.055) ** 2.4 : s / 12.92;
  });
  const f = (t: number) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  const x = f((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047);
  const y = f(0.2126 * r + 0.7152 * g + 0.0722 * b);
  const z = f((0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883);
  return [116 * y - 16, 500 * (x - y), 200 * (y - z)];
}

/** CIE76 colour difference of two `#RRGGBB` colours (about 2.3 is just noticeable; 25 reads as another colour). */
export function colorDistance(a: string, b: string): number {
  const [l1, a1, b1] = lab(a);
  const [l2, a2, b2] = lab(b);
  return Math.hypot(l1 - l2, a1 - a2, b1 - b2);
}

/** What a class colour would be confused with on the map (the meaning of the nearest reserved colour closer
 * than MIN_DISTANCE), or null when it stands apart. */
export function reservedNear(hex: string): string | null {
  let best: string | null = null;
  let bestDistance = MIN_DISTANCE;
  for (const [meaning, reserved] of Object.entries(RESERVED_COLORS)) {
    const distance = colorDistance(hex, reserved);
    if (distance < bestDistance) [best, bestDistance] = [meaning, distance];
  }
  return best;
}
