// What an object on the map is: hovering any shape (area, outline, prediction, review state, detected object)
// shows its kind or class, its area in m² and its confidence where it has one; clicking it (with the Select tool)
// pins that card beside it with a "Zoom to" link (dragging the map closes it). The topmost layer wins (detected objects over review over predictions over
// outlines over areas). Only while no shape is being drawn: then clicks belong to the drawing.

import type Feature from "ol/Feature";
import type { FeatureLike } from "ol/Feature";
import type Geometry from "ol/geom/Geometry";
import type BaseLayer from "ol/layer/Base";
import Overlay from "ol/Overlay";
import RenderFeature, { toGeometry } from "ol/render/Feature";
import { getArea } from "ol/sphere";

import { AREA_LABELS } from "../areas";
import { clear, h, icon } from "../dom";
import { REVIEW_LABELS, type ReviewKind } from "../styles";
import type { AreaKind, DetectorClass } from "../types";
import type { WorkspaceMap } from "./map";

export interface ObjectInfo {
  /** What it is: "area", "outline", "prediction", "review", "detection" or "cluster". */
  kind: string;
  title: string;
  /** Label and value pairs, in order. */
  rows: Array<[string, string]>;
  extent: number[];
}

/** An area in plain words: m² (and hectares when large). */
export function formatArea(m2: number): string {
  if (m2 >= 10_000) return `${Math.round(m2).toLocaleString("en")} m² (${(m2 / 10_000).toLocaleString("en", { maximumFractionDigits: 2 })} ha)`;
  return `${m2 < 10 ? m2.toFixed(1) : Math.round(m2).toLocaleString("en")} m²`;
}

const percent = (score: unknown) => `${Math.round(Number(score) * 100)}%`;

export interface InfoOptions {
  ws: WorkspaceMap;
  mapEl: HTMLElement;
  classes(): DetectorClass[];
  /** Whether hovering and clicking describe objects now (the Select tool, nothing being drawn). */
  active(): boolean;
}

export function createInfo({ ws, mapEl, classes, active }: InfoOptions) {
  const { map } = ws;
  const className = (id: unknown) => classes().find((c) => c.id === id)?.name ?? "Deleted class";
  const layers: Array<[BaseLayer, string]> = [
    [ws.detectionLayer, "detection"],
    [ws.reviewLayer, "review"],
    [ws.predictionLayer, "prediction"],
    [ws.outlineLayer, "outline"],
    [ws.areaLayer, "area"],
  ];

  function describe(feature: FeatureLike, layer: BaseLayer): ObjectInfo | null {
    const which = layers.find(([l]) => l === layer)?.[1];
    const geometry: Geometry | undefined = feature instanceof RenderFeature ? toGeometry(feature) : (feature as Feature).getGeometry();
    if (!which || !geometry) return null;
    const extent = geometry.getExtent();
    const area = geometry.getType().endsWith("Polygon") ? formatArea(getArea(geometry, { projection: "EPSG:3857" })) : null;
    const get = (key: string) => feature.get(key);
    switch (which) {
      case "area":
        return { kind: "area", title: AREA_LABELS[get("kind") as AreaKind] ?? "Area", rows: [["Area", area ?? "–"]], extent };
      case "outline":
        return {
          kind: "outline",
          title: className(get("classId")),
          rows: [["Outlined by hand", get("flagged") ? "outside every area: ignored by training" : "used for training"], ["Area", area ?? "–"]],
          extent,
        };
      case "prediction":
        return { kind: "prediction", title: String(get("class_name") ?? "Found"), rows: [["Found by", "the detector (testing area)"], ["Confidence", percent(get("score"))], ["Area", area ?? "–"]], extent };
      case "review":
        return { kind: "review", title: REVIEW_LABELS[get("kind") as ReviewKind] ?? "Review", rows: [["Class", String(get("class") ?? "–")], ["Area", area ?? "–"]], extent };
      default: {
        const n = Number(get("n") ?? 0);
        if (n)
          return { kind: "cluster", title: `${n.toLocaleString("en")} detected ${n === 1 ? "object" : "objects"} here`, rows: [["Class", className(get("class_id"))], ["", "Zoom in to see each one"]], extent };
        return { kind: "detection", title: className(get("class_id")), rows: [["Detected", "by the detector"], ["Confidence", percent(get("score"))], ["Area", area ?? "–"]], extent };
      }
    }
  }

  function objectAt(pixel: number[]): ObjectInfo | null {
    let found: ObjectInfo | null = null;
    map.forEachFeatureAtPixel(
      pixel,
      (feature, layer) => {
        found = describe(feature, layer);
        return Boolean(found);
      },
      { hitTolerance: 3, layerFilter: (layer) => layers.some(([l]) => l === layer) && layer.getVisible() },
    );
    return found;
  }

  // The hover card follows the pointer; the pinned one stays where it was clicked.
  const hover = h("div", { class: "map-info hover", "data-testid": "map-hover", role: "tooltip" });
  const pinned = h("div", { class: "map-info", "data-testid": "map-info", role: "dialog", "aria-label": "About this object" });
  const hoverOverlay = new Overlay({ element: hover, offset: [14, 14], positioning: "top-left", stopEvent: false });
  // Beside the object, not over it: the object stays in sight, and its points can still be dragged.
  const pinnedOverlay = new Overlay({ element: pinned, offset: [14, 0], positioning: "center-left", stopEvent: true });
  map.addOverlay(hoverOverlay);
  map.addOverlay(pinnedOverlay);

  function fill(el: HTMLElement, info: ObjectInfo, withActions: boolean): void {
    clear(el);
    el.dataset.kind = info.kind;
    el.append(
      h("strong", { class: "map-info-title" }, info.title),
      h("dl", null, ...info.rows.flatMap(([label, value]) => [h("dt", null, label), h("dd", null, value)])),
    );
    if (withActions)
      el.append(
        h(
          "div",
          { class: "map-info-actions" },
          h("button", { type: "button", class: "link-btn", "data-testid": "map-info-zoom", onclick: () => ws.fitExtent(info.extent, 140) }, icon("zoom", 14), "Zoom to"),
          h("button", { type: "button", class: "icon-btn", "aria-label": "Close", title: "Close", "data-testid": "map-info-close", onclick: () => pinnedOverlay.setPosition(undefined) }, "×"),
        ),
      );
  }

  let frame = 0;
  let lastPixel: number[] | null = null;
  const onMove = (event: { pixel: number[]; dragging: boolean }) => {
    lastPixel = event.pixel;
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const info = !event.dragging && active() && lastPixel ? objectAt(lastPixel) : null;
      if (!info) {
        hoverOverlay.setPosition(undefined);
        mapEl.dataset.hover = "";
        return;
      }
      fill(hover, info, false);
      hoverOverlay.setPosition(map.getCoordinateFromPixel(lastPixel!));
      mapEl.dataset.hover = info.kind;
    });
  };
  const onClick = (event: { pixel: number[]; coordinate: number[] }) => {
    const info = active() ? objectAt(event.pixel) : null;
    if (!info) {
      pinnedOverlay.setPosition(undefined);
      return;
    }
    fill(pinned, info, true);
    hoverOverlay.setPosition(undefined);
    const visible = map.getView().calculateExtent(map.getSize());
    const right = info.extent[2] < visible[2] ? info.extent[2] : event.coordinate[0];
    pinnedOverlay.setPosition([right, event.coordinate[1]]);
  };
  const onDrag = () => pinnedOverlay.setPosition(undefined);
  map.on("pointermove", onMove);
  map.on("singleclick", onClick);
  map.on("pointerdrag", onDrag);
  const onLeave = () => hoverOverlay.setPosition(undefined);
  mapEl.addEventListener("pointerleave", onLeave);

  return {
    /** Close the cards (another image opened). */
    close: () => {
      hoverOverlay.setPosition(undefined);
      pinnedOverlay.setPosition(undefined);
    },
    dispose: () => {
      cancelAnimationFrame(frame);
      map.un("pointermove", onMove);
      map.un("singleclick", onClick);
      map.un("pointerdrag", onDrag);
      mapEl.removeEventListener("pointerleave", onLeave);
      map.removeOverlay(hoverOverlay);
      map.removeOverlay(pinnedOverlay);
    },
  };
}
