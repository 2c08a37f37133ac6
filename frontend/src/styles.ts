// Map styles, the one place they are made: areas by kind (solid, dashed, dash-dot), outlines by class colour with a
// light fill (the imagery stays visible), ignored outlines washed out and dashed, predictions, the review states
// (each with its own stroke, dash, fill and mark, not colour alone), detected objects by class, the selection.
// The colours are in palette.ts; the legend draws its swatches with these same styles.

import type { FeatureLike } from "ol/Feature";
import MultiPoint from "ol/geom/MultiPoint";
import type Polygon from "ol/geom/Polygon";
import { Circle as CircleStyle, Fill, Stroke, Style, Text } from "ol/style";

import { AREA_COLORS } from "./areas";
import { IGNORED_COLOR, PREDICTION_COLOR, REVIEW_COLORS, SELECTION_COLOR, SUGGESTION_COLOR } from "./palette";
import type { AreaKind } from "./types";

export { AREA_COLORS, AREA_LABELS } from "./areas";
export { PREDICTION_COLOR, REVIEW_COLORS, SUGGESTION_COLOR } from "./palette";

/** Outlines outside every area (ignored by training). */
export const FLAG_COLOR = IGNORED_COLOR;

/** How each kind of area's edge is drawn: the kind reads from the dash as well as the colour. */
export const AREA_DASH: Record<AreaKind, number[] | undefined> = {
  training: undefined,
  testing: [10, 6],
  accuracy: [14, 5, 2, 5],
  detection: [2, 6],
};

export function rgba(hex: string, alpha: number): string {
  const value = parseInt(hex.replace("#", ""), 16);
  return `rgba(${(value >> 16) & 255}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
}

const cache = new Map<string, Style[]>();

export function areaStyle(kind: AreaKind): Style[] {
  const key = `area:${kind}`;
  if (!cache.has(key)) {
    const color = AREA_COLORS[kind] ?? "#868E96";
    cache.set(key, [
      new Style({ stroke: new Stroke({ color: "rgba(255,255,255,0.85)", width: 5 }) }),
      new Style({
        stroke: new Stroke({ color, width: 2.5, lineDash: AREA_DASH[kind] }),
        fill: new Fill({ color: rgba(color, 0.04) }),
      }),
    ]);
  }
  return cache.get(key)!;
}

/** The user's outlines: the class colour, a white halo, and a fill light enough to see the crown under it.
 * An outline outside every area (ignored) is grey, thin and dashed, with no fill. */
export function outlineStyle(color: string, flagged: boolean): Style[] {
  const key = `outline:${color}:${flagged}`;
  if (!cache.has(key)) {
    cache.set(
      key,
      flagged
        ? [
            new Style({ stroke: new Stroke({ color: "rgba(0,0,0,0.45)", width: 3.5 }) }),
            new Style({ stroke: new Stroke({ color: FLAG_COLOR, width: 1.5, lineDash: [5, 4] }) }),
          ]
        : [
            new Style({ stroke: new Stroke({ color: "rgba(255,255,255,0.7)", width: 3.5 }) }),
            new Style({ stroke: new Stroke({ color, width: 2 }), fill: new Fill({ color: rgba(color, 0.1) }) }),
          ],
    );
  }
  return cache.get(key)!;
}

const vertexStyle = new Style({
  image: new CircleStyle({ radius: 4.5, fill: new Fill({ color: "#ffffff" }), stroke: new Stroke({ color: SELECTION_COLOR, width: 2 }) }),
  geometry: (feature: FeatureLike) => {
    const geometry = feature.getGeometry() as Polygon | undefined;
    return geometry ? new MultiPoint(geometry.getCoordinates()[0] ?? []) : undefined;
  },
});

export const selectedStyles = [
  new Style({ stroke: new Stroke({ color: "#ffffff", width: 6 }) }),
  new Style({ stroke: new Stroke({ color: "#1864AB", width: 2.5 }), fill: new Fill({ color: "rgba(24,100,171,0.18)" }) }),
  vertexStyle,
];

/** The object "Show me" points at: a thick light halo under a dark line, drawn over every other layer. */
export const highlightStyles = [
  new Style({ stroke: new Stroke({ color: "rgba(255,255,255,0.9)", width: 7 }) }),
  new Style({ stroke: new Stroke({ color: "#111", width: 2.5 }) }),
];

export const footprintStyle = new Style({
  stroke: new Stroke({ color: "rgba(33,37,41,0.75)", width: 1.5, lineDash: [4, 4] }),
  fill: new Fill({ color: "rgba(255,255,255,0.04)" }),
});

export const sketchStyle = [
  new Style({ stroke: new Stroke({ color: "#ffffff", width: 5 }) }),
  new Style({
    stroke: new Stroke({ color: "#1864AB", width: 2, lineDash: [6, 4] }),
    fill: new Fill({ color: "rgba(24,100,171,0.12)" }),
    image: new CircleStyle({ radius: 5, fill: new Fill({ color: "#1864AB" }), stroke: new Stroke({ color: "#fff", width: 2 }) }),
  }),
];

export type ReviewKind = keyof typeof REVIEW_COLORS;

export const REVIEW_LABELS: Record<ReviewKind, string> = {
  match: "Found correctly",
  false_detection: "False detection",
  miss: "Missed object",
  unoutlined: "Found in a training area, not outlined",
};

/** The mark drawn inside each review state's shapes (a second cue besides colour and dash). */
export const REVIEW_MARKS: Record<ReviewKind, string> = {
  match: "✓",
  false_detection: "✕",
  miss: "!",
  unoutlined: "?",
};

/** What a trained version found in the testing areas: a yellow line on a dark halo, almost no fill. */
export function predictionStyle(): Style[] {
  const key = "prediction";
  if (!cache.has(key)) {
    cache.set(key, [
      new Style({ stroke: new Stroke({ color: "rgba(0,0,0,0.55)", width: 4 }) }),
      new Style({ stroke: new Stroke({ color: PREDICTION_COLOR, width: 2 }), fill: new Fill({ color: rgba(PREDICTION_COLOR, 0.08) }) }),
    ]);
  }
  return cache.get(key)!;
}

/** Diagonal hatching in `color` (false detections: "this should not be here"). A plain fill where there is no
 * canvas (tests outside a browser). */
function hatch(color: string): string | CanvasPattern {
  if (typeof document === "undefined") return rgba(color, 0.3);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 8;
  const context = canvas.getContext("2d");
  if (!context) return rgba(color, 0.3);
  context.strokeStyle = rgba(color, 0.75);
  context.lineWidth = 1.5;
  context.beginPath();
  for (const offset of [-8, 0, 8]) {
    context.moveTo(offset, 8);
    context.lineTo(offset + 8, 0);
  }
  context.stroke();
  return context.createPattern(canvas, "repeat") ?? rgba(color, 0.3);
}

const interiorPoint = (feature: FeatureLike) => {
  const geometry = feature.getGeometry() as Polygon | undefined;
  return geometry?.getType() === "Polygon" ? geometry.getInteriorPoint() : geometry;
};

/** Each review state has its own colour, stroke, dash, fill and mark: correct finds stay discreet (thin white,
 * ✓); false detections are hatched (✕); misses thick and dashed (!); unoutlined finds dotted (?). */
export function reviewStyle(kind: ReviewKind): Style[] {
  const key = `review:${kind}`;
  if (!cache.has(key)) {
    const color = REVIEW_COLORS[kind] ?? "#868E96";
    const halo = kind === "match" || kind === "unoutlined" ? "rgba(0,0,0,0.6)" : "rgba(255,255,255,0.85)";
    const line: Record<ReviewKind, { width: number; dash?: number[] }> = {
      match: { width: 1.5 },
      false_detection: { width: 2.5 },
      miss: { width: 3, dash: [8, 5] },
      unoutlined: { width: 3, dash: [1, 6] },
    };
    const { width, dash } = line[kind];
    cache.set(key, [
      new Style({ stroke: new Stroke({ color: halo, width: width + 2.5, lineDash: kind === "unoutlined" ? undefined : dash }) }),
      new Style({
        stroke: new Stroke({ color, width, lineDash: dash, lineCap: kind === "unoutlined" ? "round" : "butt" }),
        fill: kind === "false_detection" ? new Fill({ color: hatch(color) }) : undefined,
      }),
      new Style({
        geometry: interiorPoint,
        text: new Text({
          text: REVIEW_MARKS[kind],
          font: "bold 13px system-ui, sans-serif",
          fill: new Fill({ color: kind === "match" ? "#ffffff" : color }),
          stroke: new Stroke({ color: "rgba(0,0,0,0.8)", width: 3 }),
        }),
      }),
    ]);
  }
  return cache.get(key)!;
}

/** A suggested area (where to label next): a magenta long-dash square on a dark halo, a faint fill, and its rank
 * in the middle (the list beside the map says the same number); `rank` 0 draws no number (the legend). */
export function suggestionStyle(rank: number): Style[] {
  const key = `suggestion:${rank}`;
  if (!cache.has(key)) {
    cache.set(key, [
      new Style({ stroke: new Stroke({ color: "rgba(0,0,0,0.6)", width: 5 }) }),
      new Style({ stroke: new Stroke({ color: SUGGESTION_COLOR, width: 2.5, lineDash: [16, 6] }), fill: new Fill({ color: rgba(SUGGESTION_COLOR, 0.06) }) }),
      ...(rank
        ? [
            new Style({
              geometry: interiorPoint,
              text: new Text({ text: String(rank), font: "bold 16px system-ui, sans-serif", fill: new Fill({ color: SUGGESTION_COLOR }), stroke: new Stroke({ color: "rgba(0,0,0,0.85)", width: 4 }) }),
            }),
          ]
        : []),
    ]);
  }
  return cache.get(key)!;
}

/** A detected object in its class colour, lightly filled, with no halo where hand-drawn outlines have a white one
 * (one style per object: a second, a halo, doubled the map's memory at 100,000 objects); the layer's opacity
 * slider fades them all; far out, a dot per cluster sized by its count. */
export function detectionStyle(color: string, count = 0): Style[] {
  const size = count ? Math.min(6, Math.ceil(Math.log2(count + 1))) : 0;
  const key = `detection:${color}:${size}`;
  if (!cache.has(key)) {
    cache.set(key, [
      count
        ? new Style({ image: new CircleStyle({ radius: 2 + size, fill: new Fill({ color }), stroke: new Stroke({ color: "#fff", width: 1 }) }) })
        : new Style({ stroke: new Stroke({ color, width: 1.5 }), fill: new Fill({ color: rgba(color, 0.3) }) }),
    ]);
  }
  return cache.get(key)!;
}
