// The map's legend, always on screen: one entry for each thing the map shows now (a kind of area, a class's
// outlines, ignored outlines, predictions, each review state, suggested areas, each class of detected objects), with its count on
// the open image and a swatch drawn by the map's own styles, so the legend cannot drift from the map. Hidden
// layers and things absent from the open image are left out. Clicking an entry steps through its shapes (for
// areas: fit to each area in turn). Its entries carry data-entry (e.g. "area:training", "review:miss") for the
// browser tests.

import Feature from "ol/Feature";
import Polygon from "ol/geom/Polygon";
import { unByKey } from "ol/Observable";
import { toContext } from "ol/render";
import type { Style } from "ol/style";

import { AREA_LABELS } from "../areas";
import { clear, h } from "../dom";
import { areaStyle, detectionStyle, outlineStyle, predictionStyle, REVIEW_LABELS, type ReviewKind, reviewStyle, suggestionStyle } from "../styles";
import type { AreaKind, DetectorClass } from "../types";
import type { WorkspaceMap } from "./map";

export interface LegendEntry {
  id: string;
  label: string;
  count: number | null;
  styles: Style | Style[];
  /** The shapes it stands for on the open image (clicking steps through them); empty for vector tiles. */
  shapes: Feature[];
}

const AREA_KINDS: AreaKind[] = ["training", "testing", "accuracy", "detection"];
const REVIEW_KINDS: ReviewKind[] = ["match", "false_detection", "miss", "unoutlined"];
const SWATCH = { width: 30, height: 20 };

/** A small picture of `styles` applied to a rectangle, drawn with OpenLayers' immediate renderer. */
function swatch(styles: Style | Style[]): HTMLCanvasElement {
  const ratio = window.devicePixelRatio || 1;
  const canvas = h("canvas", { class: "legend-swatch", width: SWATCH.width * ratio, height: SWATCH.height * ratio, "aria-hidden": "true" });
  canvas.style.width = `${SWATCH.width}px`;
  canvas.style.height = `${SWATCH.height}px`;
  const context = canvas.getContext("2d");
  if (!context) return canvas;
  const render = toContext(context, { size: [SWATCH.width, SWATCH.height], pixelRatio: ratio });
  // On half pixels: thin strokes cover whole pixels (crisp, and their colour is the style's own).
  const [x0, y0, x1, y1] = [4.5, 4.5, SWATCH.width - 4.5, SWATCH.height - 4.5];
  const feature = new Feature(new Polygon([[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]));
  for (const style of Array.isArray(styles) ? styles : [styles]) render.drawFeature(feature, style);
  return canvas;
}

export interface LegendOptions {
  ws: WorkspaceMap;
  classes(): DetectorClass[];
  classColor(id: string | undefined): string;
}

export type Legend = ReturnType<typeof createLegend>;

export function createLegend({ ws, classes, classColor }: LegendOptions) {
  const list = h("div", { class: "legend-list" });
  const element = h("div", { class: "map-legend", "data-testid": "legend", role: "region", "aria-label": "Legend" }, h("div", { class: "legend-title" }, "On the map"), list);
  const cursors = new Map<string, number>();

  const className = (id: string) => classes().find((c) => c.id === id)?.name ?? "Deleted class";

  /** What the map shows now, in the order it is stacked (bottom first). */
  function entries(): LegendEntry[] {
    const out: LegendEntry[] = [];
    if (ws.areaLayer.getVisible()) {
      const areas = ws.areaSource.getFeatures();
      for (const kind of AREA_KINDS) {
        const shapes = areas.filter((f) => f.get("kind") === kind);
        if (shapes.length && ws.isKindVisible(kind)) out.push({ id: `area:${kind}`, label: `${AREA_LABELS[kind]}s`, count: shapes.length, styles: areaStyle(kind), shapes });
      }
    }
    if (ws.outlineLayer.getVisible()) {
      const outlines = ws.outlineSource.getFeatures();
      const byClass = new Map<string, Feature[]>();
      for (const f of outlines) if (!f.get("flagged")) byClass.set(f.get("classId"), [...(byClass.get(f.get("classId")) ?? []), f]);
      for (const c of classes()) {
        const shapes = byClass.get(c.id) ?? [];
        if (shapes.length) out.push({ id: `outline:${c.id}`, label: `Outlined: ${c.name}`, count: shapes.length, styles: outlineStyle(c.color, false), shapes });
      }
      const ignored = outlines.filter((f) => f.get("flagged"));
      if (ignored.length && ws.flaggedVisible())
        out.push({ id: "ignored", label: "Outside every area: ignored", count: ignored.length, styles: outlineStyle(classColor(undefined), true), shapes: ignored });
    }
    if (ws.predictionLayer.getVisible()) {
      const shapes = ws.predictionSource.getFeatures().filter(ws.onOpenImage);
      if (shapes.length) out.push({ id: "prediction", label: "Found by the detector (testing areas)", count: shapes.length, styles: predictionStyle(), shapes });
    }
    if (ws.reviewLayer.getVisible()) {
      const review = ws.reviewSource.getFeatures().filter(ws.onOpenImage);
      for (const kind of REVIEW_KINDS) {
        const shapes = review.filter((f) => f.get("kind") === kind);
        if (shapes.length) out.push({ id: `review:${kind}`, label: REVIEW_LABELS[kind], count: shapes.length, styles: reviewStyle(kind), shapes });
      }
    }
    if (ws.suggestionLayer.getVisible()) {
      const shapes = ws.openSuggestions();
      if (shapes.length) out.push({ id: "suggestion", label: "Suggested: label here next", count: shapes.length, styles: suggestionStyle(0), shapes });
    }
    if (ws.detectionLayer.getVisible() && ws.detectionLayer.getSource()) {
      for (const id of ws.detectionClasses) out.push({ id: `detection:${id}`, label: `Detected: ${className(id)}`, count: null, styles: detectionStyle(classColor(id)), shapes: [] });
    }
    return out;
  }

  function render(): void {
    clear(list);
    const shown = entries();
    element.dataset.entries = shown.map((e) => e.id).join(" ");
    if (!shown.length) {
      const anything =
        ws.areaSource.getFeatures().length + ws.outlineSource.getFeatures().length > 0 ||
        ws.predictionSource.getFeatures().some(ws.onOpenImage) ||
        ws.reviewSource.getFeatures().some(ws.onOpenImage) ||
        ws.openSuggestions().length > 0 ||
        Boolean(ws.detectionLayer.getSource());
      list.append(h("p", { class: "legend-empty" }, anything ? "All hidden: turn layers on under Layers" : "Nothing drawn on this image yet"));
      return;
    }
    for (const entry of shown) {
      const step = () => {
        if (!entry.shapes.length) return;
        const index = (cursors.get(entry.id) ?? -1) + 1;
        cursors.set(entry.id, index);
        ws.fitExtent(entry.shapes[index % entry.shapes.length].getGeometry()!.getExtent(), entry.id.startsWith("area:") ? 40 : 140);
      };
      const title = entry.shapes.length ? (entry.id.startsWith("area:") ? "Fit the next one in view" : "Zoom to the next one") : undefined;
      list.append(
        h(
          entry.shapes.length ? "button" : "div",
          { class: "legend-entry", type: entry.shapes.length ? "button" : undefined, title, "data-testid": "legend-entry", "data-entry": entry.id, onclick: step },
          swatch(entry.styles),
          h("span", { class: "legend-label" }, entry.label),
          entry.count === null ? null : h("span", { class: "legend-count" }, String(entry.count)),
        ),
      );
    }
  }

  let frame = 0;
  /** Redraw on the next frame (many changes in one go redraw once). */
  function update(): void {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      render();
    });
  }

  const sources = [ws.areaSource, ws.outlineSource, ws.predictionSource, ws.reviewSource, ws.suggestionSource];
  const layers = [ws.areaLayer, ws.outlineLayer, ws.predictionLayer, ws.reviewLayer, ws.suggestionLayer, ws.detectionLayer];
  const keys = sources.map((s) => s.on("change", update));
  keys.push(...sources.map((s) => s.on("changefeature", update)));
  keys.push(...layers.map((l) => l.on(["change", "change:visible", "change:source", "propertychange"], update)).flat());
  render();

  return {
    element,
    update,
    /** The entries shown now (for the info popup's names and for tests through data-entries). */
    entries,
    dispose: () => {
      cancelAnimationFrame(frame);
      unByKey(keys);
    },
  };
}
