// Map styles: areas by kind, outlines by class colour, flagged outlines in red, selection with vertices.

import type { FeatureLike } from "ol/Feature";
import MultiPoint from "ol/geom/MultiPoint";
import type Polygon from "ol/geom/Polygon";
import { Circle as CircleStyle, Fill, Stroke, Style } from "ol/style";

import { AREA_COLORS } from "./areas";
import type { AreaKind } from "./types";

export { AREA_COLORS, AREA_LABELS } from "./areas";

export const FLAG_COLOR = "#E03131";

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
        stroke: new Stroke({ color, width: 2.5, lineDash: kind === "testing" ? [10, 6] : undefined }),
        fill: new Fill({ color: rgba(color, 0.07) }),
      }),
    ]);
  }
  return cache.get(key)!;
}

export function outlineStyle(color: string, flagged: boolean): Style[] {
  const key = `outline:${color}:${flagged}`;
  if (!cache.has(key)) {
    const stroke = flagged ? FLAG_COLOR : color;
    cache.set(key, [
      new Style({ stroke: new Stroke({ color: "rgba(255,255,255,0.7)", width: 4 }) }),
      new Style({
        stroke: new Stroke({ color: stroke, width: 2, lineDash: flagged ? [5, 4] : undefined }),
        fill: new Fill({ color: rgba(stroke, flagged ? 0.22 : 0.28) }),
      }),
    ]);
  }
  return cache.get(key)!;
}

const vertexStyle = new Style({
  image: new CircleStyle({ radius: 4.5, fill: new Fill({ color: "#ffffff" }), stroke: new Stroke({ color: "#1864AB", width: 2 }) }),
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

/** What a trained version found: yellow, so it stands apart from the user's own outlines. */
export const PREDICTION_COLOR = "#FAB005";

export const REVIEW_COLORS = {
  match: "#2F9E44",
  false_detection: "#F76707",
  miss: "#E03131",
  unoutlined: "#AE3EC9",
} as const;

export type ReviewKind = keyof typeof REVIEW_COLORS;

export const REVIEW_LABELS: Record<ReviewKind, string> = {
  match: "Found correctly",
  false_detection: "False detection",
  miss: "Missed object",
  unoutlined: "Found in a training area, not outlined",
};

export function predictionStyle(): Style[] {
  const key = "prediction";
  if (!cache.has(key)) {
    cache.set(key, [
      new Style({ stroke: new Stroke({ color: "rgba(0,0,0,0.55)", width: 4 }) }),
      new Style({ stroke: new Stroke({ color: PREDICTION_COLOR, width: 2 }), fill: new Fill({ color: rgba(PREDICTION_COLOR, 0.18) }) }),
    ]);
  }
  return cache.get(key)!;
}

/** Misses, false detections and unoutlined finds stand out (thick, dashed where the user's outline is
 * wanting); matches stay discreet. */
export function reviewStyle(kind: ReviewKind): Style[] {
  const key = `review:${kind}`;
  if (!cache.has(key)) {
    const color = REVIEW_COLORS[kind] ?? "#868E96";
    cache.set(key, [
      new Style({ stroke: new Stroke({ color: "rgba(255,255,255,0.8)", width: kind === "match" ? 3 : 5 }) }),
      new Style({
        stroke: new Stroke({ color, width: kind === "match" ? 1.5 : 3, lineDash: kind === "miss" || kind === "unoutlined" ? [6, 4] : undefined }),
        fill: new Fill({ color: rgba(color, kind === "match" ? 0.08 : 0.25) }),
      }),
    ]);
  }
  return cache.get(key)!;
}
