// The detector workspace: a full-window map of one image with the detector's areas and outlines, drawing and
// editing tools saved to the server as the user draws, undo/redo, a guidance checklist and layer toggles.
// The Train panel (`views/training.ts`) sits at the top of the side panel; what a trained version found in
// the testing areas, and where it erred in the accuracy areas, are drawn over the image.

import Feature from "ol/Feature";
import OlMap from "ol/Map";
import View from "ol/View";
import { defaults as defaultControls, ScaleLine } from "ol/control";
import { getCenter } from "ol/extent";
import GeoJSON from "ol/format/GeoJSON";
import type Circle from "ol/geom/Circle";
import Polygon from "ol/geom/Polygon";
import { defaults as defaultInteractions } from "ol/interaction";
import Draw, { createBox } from "ol/interaction/Draw";
import Modify from "ol/interaction/Modify";
import Select from "ol/interaction/Select";
import Snap from "ol/interaction/Snap";
import Translate from "ol/interaction/Translate";
import TileLayer from "ol/layer/Tile";
import VectorLayer from "ol/layer/Vector";
import VectorTileLayer from "ol/layer/VectorTile";
import MVT from "ol/format/MVT";
import VectorTileSource from "ol/source/VectorTile";
import { Circle as CircleStyle, Fill, Stroke, Style } from "ol/style";
import { transformExtent } from "ol/proj";
import OSM from "ol/source/OSM";
import VectorSource from "ol/source/Vector";
import XYZ from "ol/source/XYZ";

import { ApiError } from "../api";
import type { AppContext } from "../app";
import { BASE } from "../app";
import { clear, errorMessage, h, icon, toast } from "../dom";
import { type Coord, circleToPolygon, isDrawable, type Ring } from "../geometry";
import { guidance } from "../guidance";
import {
  AREA_COLORS,
  AREA_LABELS,
  areaStyle,
  FLAG_COLOR,
  footprintStyle,
  outlineStyle,
  PREDICTION_COLOR,
  predictionStyle,
  REVIEW_COLORS,
  type ReviewKind,
  reviewStyle,
  selectedStyles,
  sketchStyle,
} from "../styles";
import { thumbnail } from "../thumbs";
import type {
  Annotation,
  Area,
  AreaKind,
  Detector,
  DetectorClass,
  DetectionRun,
  DetectorImage,
  FeatureCollection,
  ImageInfo,
  Polygon as GeoPolygon,
  Project,
  TileJson,
} from "../types";
import { UndoStack } from "../undo";
import { imageStatusBadge, PALETTE } from "./project";
import { detectionPanel } from "./detection";
import { trainingPanel } from "./training";

type DrawKind = "polygon" | "rectangle" | "circle" | "freehand";
type Tool = { mode: "select" } | { mode: "area"; kind: AreaKind; shape: "rectangle" | "polygon" } | { mode: "outline"; shape: DrawKind };

interface ToolInfo {
  key: string;
  label: string;
  hint: string;
}

const AREA_KEYS: Record<string, AreaKind> = { t: "training", e: "testing", a: "accuracy" };
const OUTLINE_KEYS: Record<string, DrawKind> = { p: "polygon", r: "rectangle", c: "circle", f: "freehand" };
const OUTLINE_LABELS: Record<DrawKind, string> = { polygon: "Polygon", rectangle: "Rectangle", circle: "Circle", freehand: "Freehand" };

const HINTS: Record<string, string> = {
  select: "Click a shape to select it · drag it to move · drag its points to reshape · Delete removes it",
  rectangle: "Click one corner, then the opposite corner · Esc cancels",
  polygon: "Click to add points · click the first point, double-click or press Enter to finish · Backspace removes the last point",
  circle: "Click the centre, then click again to set the size",
  freehand: "Press and drag around the object; release to finish",
};

function toolKey(tool: Tool): string {
  return tool.mode === "select" ? "select" : tool.mode === "area" ? `area:${tool.kind}` : `outline:${tool.shape}`;
}

function toolInfo(tool: Tool): ToolInfo {
  if (tool.mode === "select") return { key: "V", label: "Select and edit", hint: HINTS.select };
  if (tool.mode === "area") {
    const key = Object.entries(AREA_KEYS).find(([, k]) => k === tool.kind)?.[0].toUpperCase() ?? "";
    return { key, label: `${AREA_LABELS[tool.kind]} (${tool.shape})`, hint: `${AREA_LABELS[tool.kind]}: ${HINTS[tool.shape]}` };
  }
  const key = Object.entries(OUTLINE_KEYS).find(([, s]) => s === tool.shape)?.[0].toUpperCase() ?? "";
  return { key, label: `Outline: ${OUTLINE_LABELS[tool.shape].toLowerCase()}`, hint: `Outline (${OUTLINE_LABELS[tool.shape].toLowerCase()}): ${HINTS[tool.shape]}` };
}

const SHORTCUTS: Array<[string, string]> = [
  ["V", "Select, move and reshape"],
  ["T", "Draw a training area (rectangle)"],
  ["E", "Draw a testing area (rectangle)"],
  ["A", "Draw an accuracy area (rectangle)"],
  ["Shift + T / E / A", "Draw the area as a polygon"],
  ["P", "Outline with a polygon"],
  ["R", "Outline with a rectangle"],
  ["C", "Outline with a circle"],
  ["F", "Outline freehand (lasso)"],
  ["1 – 9", "Choose the kind of object to outline"],
  ["Enter", "Finish the polygon being drawn"],
  ["Backspace", "Remove the last point while drawing"],
  ["Esc", "Cancel drawing / clear the selection"],
  ["Delete", "Delete the selected shapes"],
  ["Ctrl + Z", "Undo"],
  ["Ctrl + Shift + Z or Ctrl + Y", "Redo"],
  ["S", "Snapping on / off"],
  ["?", "Show or hide this help"],
];

const geojson = new GeoJSON({ dataProjection: "EPSG:4326", featureProjection: "EPSG:3857" });

function toApiGeometry(feature: Feature): GeoPolygon {
  const geometry = feature.getGeometry() as Polygon;
  return geojson.writeGeometryObject(geometry, { decimals: 9 }) as unknown as GeoPolygon;
}

function ringOf(feature: Feature): Ring {
  return ((feature.getGeometry() as Polygon).getCoordinates()[0] ?? []) as Ring;
}

/** Serial saving: edits reach the server in the order they were made; the indicator shows what is pending. */
class SaveQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private lastError: string | null = null;
  constructor(private readonly onState: (state: "saved" | "saving" | "error", message: string) => void) {}

  run<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    this.report();
    const result = this.tail.then(job);
    this.tail = result.catch(() => undefined);
    result.then(
      () => {
        this.pending--;
        this.lastError = null;
        this.report();
      },
      (error) => {
        this.pending--;
        this.lastError = errorMessage(error);
        this.report();
      },
    );
    return result;
  }

  /** Edits are still on their way to the server. */
  get busy(): boolean {
    return this.pending > 0;
  }

  private report(): void {
    if (this.pending > 0) this.onState("saving", "Saving…");
    else if (this.lastError) this.onState("error", `Not saved: ${this.lastError}`);
    else this.onState("saved", "All changes saved");
  }
}

export function workspaceView(root: HTMLElement, ctx: AppContext, params: Record<string, string>): () => void {
  const detectorId = params.id;
  let alive = true;
  const disposers: Array<() => void> = [];

  let detector: Detector | null = null;
  let project: Project | null = null;
  let classes: DetectorClass[] = [];
  let activeClassId: string | null = null;
  let attachments: DetectorImage[] = [];
  const imageInfo = new Map<string, ImageInfo>();
  let projectImages: ImageInfo[] = [];
  let current: ImageInfo | null = null;
  let tool: Tool = { mode: "select" };
  let areaShape: "rectangle" | "polygon" = "rectangle";
  let snapping = true;
  const visibleKinds = new Set<AreaKind>(["training", "testing", "accuracy", "detection"]);
  const undo = new UndoStack();
  let checkCursor = 0;

  // ---- DOM skeleton -------------------------------------------------------------------------------------
  const saveStatus = h("div", { class: "save-status", "data-testid": "save-status", "data-state": "saved", role: "status" }, icon("check", 14), h("span", null, "All changes saved"));
  const setSave = (state: "saved" | "saving" | "error", message: string) => {
    saveStatus.dataset.state = state;
    clear(saveStatus);
    saveStatus.append(state === "saving" ? h("span", { class: "spinner" }) : icon(state === "error" ? "warn" : "check", 14), h("span", null, message));
  };
  const queue = new SaveQueue(setSave);

  const titleEl = h("h1", { class: "ws-title" }, "Loading…");
  const backLink = h("a", { class: "back-link", href: BASE, "data-link": "" }, icon("back", 14), "Project");
  const checklist = h("div", { class: "checklist", "data-testid": "checklist" });
  const imagesEl = h("div", { class: "ws-images", "data-testid": "ws-images" });
  const attachEl = h("div", { class: "attach" });
  const classesEl = h("div", { class: "ws-classes", "data-testid": "classes" });
  const layersEl = h("div", { class: "ws-layers", "data-testid": "layers" });
  const mapEl = h("div", { class: "map", "data-testid": "map", tabindex: "0" });
  const mapNotice = h("div", { class: "map-notice", hidden: true, "data-testid": "map-notice" });
  const hintEl = h("div", { class: "map-hint", "data-testid": "tool-hint" });
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Drawing tools" });
  const trainHost = h("div", { class: "ws-train-host" });
  const detectHost = h("div", { class: "ws-detect-host" });

  const section = (title: string, iconName: string, ...children: (Node | null)[]) =>
    h("section", { class: "ws-section" }, h("h2", null, icon(iconName, 16), title), ...children);

  const side = h(
    "aside",
    { class: "ws-side" },
    h("div", { class: "ws-head" }, backLink, titleEl, saveStatus),
    trainHost,
    section("Detect", "target", detectHost),
    section("Next steps", "check", checklist),
    section("Images", "image", imagesEl, attachEl),
    section("Objects to find", "target", classesEl),
    section("Layers", "layers", layersEl),
  );
  const helpButton = h("button", { class: "help-fab", title: "Keyboard shortcuts (?)", "aria-label": "Keyboard shortcuts", onclick: () => toggleHelp() }, icon("help", 20));
  const mapWrap = h("div", { class: "map-wrap" }, mapEl, toolbar, hintEl, mapNotice, helpButton);
  root.append(h("div", { class: "workspace" }, side, mapWrap));

  // ---- Map ------------------------------------------------------------------------------------------------
  const footprintSource = new VectorSource();
  const areaSource = new VectorSource<Feature>();
  const outlineSource = new VectorSource<Feature>();
  const classColor = (id: string | undefined) => classes.find((c) => c.id === id)?.color ?? "#1C7ED6";

  const imageLayer = new TileLayer({ zIndex: 1 });
  let basemapLayer: TileLayer | null = null;
  const footprintLayer = new VectorLayer({ source: footprintSource, style: footprintStyle, zIndex: 2 });
  const areaLayer = new VectorLayer({
    source: areaSource,
    zIndex: 3,
    style: (feature) => (visibleKinds.has(feature.get("kind")) ? areaStyle(feature.get("kind")) : undefined),
    updateWhileInteracting: true,
  });
  const outlineLayer = new VectorLayer({
    source: outlineSource,
    zIndex: 4,
    style: (feature) => outlineStyle(classColor(feature.get("classId")), Boolean(feature.get("flagged"))),
    updateWhileInteracting: true,
  });

  // What the shown trained version found (testing areas) and its review of the accuracy areas and the
  // training areas' unoutlined finds; each feature names its image, and only the open image's are drawn.
  const predictionSource = new VectorSource<Feature>();
  const reviewSource = new VectorSource<Feature>();
  const onOpenImage = (feature: { get(key: string): unknown }) => feature.get("image") === current?.id;
  const predictionLayer = new VectorLayer({ source: predictionSource, zIndex: 5, style: (f) => (onOpenImage(f) ? predictionStyle() : undefined) });
  const reviewLayer = new VectorLayer({
    source: reviewSource,
    zIndex: 6,
    style: (f) => (onOpenImage(f) ? reviewStyle(f.get("kind") as ReviewKind) : undefined),
  });

  // A detection's objects as vector tiles: polygons up close, clustered points (sized by count) far out.
  const detectionStyles = new Map<string, Style>();
  const detectionLayer = new VectorTileLayer({
    zIndex: 7,
    declutter: false,
    style: (feature) => {
      const color = classColor(feature.get("class_id") as string | undefined);
      const n = Number(feature.get("n") ?? 0);
      const key = `${color}:${n ? Math.min(6, Math.ceil(Math.log2(n + 1))) : "p"}`;
      if (!detectionStyles.has(key)) {
        detectionStyles.set(
          key,
          n
            ? new Style({ image: new CircleStyle({ radius: 2 + Math.min(6, Math.ceil(Math.log2(n + 1))), fill: new Fill({ color }), stroke: new Stroke({ color: "#fff", width: 1 }) }) })
            : new Style({ stroke: new Stroke({ color, width: 1.5 }), fill: new Fill({ color: `${color}55` }) }),
        );
      }
      return detectionStyles.get(key)!;
    },
  });
  let detectionTiles = 0;
  function showDetection(run: DetectionRun | null): void {
    if (!run || !run.objects_count) {
      detectionLayer.setSource(null);
      mapEl.dataset.detection = "";
      return;
    }
    const source = new VectorTileSource({ format: new MVT(), url: `${ctx.api.base}detection-runs/${run.id}/tiles/{z}/{x}/{y}.pbf?v=${run.status}-${run.cells_done}` });
    source.on("tileloadend", () => (mapEl.dataset.detectionTiles = String(++detectionTiles)));
    detectionLayer.setSource(source);
    mapEl.dataset.detection = run.id;
  }

  const map = new OlMap({
    target: mapEl,
    layers: [imageLayer, footprintLayer, areaLayer, outlineLayer, predictionLayer, reviewLayer, detectionLayer],
    view: new View({ center: [0, 0], zoom: 2, maxZoom: 24, constrainResolution: false }),
    controls: defaultControls({ attribution: true, attributionOptions: { collapsible: true } }).extend([new ScaleLine()]),
    interactions: defaultInteractions({ altShiftDragRotate: false, pinchRotate: false, shiftDragZoom: false }),
  });
  disposers.push(() => map.setTarget(undefined));

  const select = new Select({ layers: [outlineLayer, areaLayer], hitTolerance: 4, style: selectedStyles });
  const translate = new Translate({ features: select.getFeatures() });
  const modify = new Modify({ features: select.getFeatures(), pixelTolerance: 10 });
  const snaps = [new Snap({ source: outlineSource, pixelTolerance: 8 }), new Snap({ source: areaSource, pixelTolerance: 8 })];
  let draw: Draw | null = null;

  map.addInteraction(select);
  map.addInteraction(translate);
  map.addInteraction(modify);
  const addSnaps = () => snaps.forEach((s) => (map.removeInteraction(s), map.addInteraction(s), s.setActive(snapping)));
  addSnaps();

  // ---- Saving ---------------------------------------------------------------------------------------------
  const endpoint = (feature: Feature) => (feature.get("type") === "area" ? "areas/" : "annotations/");

  function createOnServer(feature: Feature): Promise<void> {
    return queue.run(async () => {
      if (!detector || !current) throw new Error("No image is open.");
      const body: Record<string, unknown> = { detector: detector.id, image: current.id, geometry: toApiGeometry(feature) };
      if (feature.get("type") === "area") body.kind = feature.get("kind");
      else body.detector_class = feature.get("classId");
      const saved = await ctx.api.post<Area | Annotation>(endpoint(feature), body);
      feature.set("id", saved.id);
      feature.set("updatedAt", saved.updated_at);
      feature.setId(saved.id);
    });
  }

  function deleteOnServer(feature: Feature): Promise<void> {
    return queue.run(async () => {
      const id = feature.get("id");
      if (!id) return;
      try {
        await ctx.api.delete(`${endpoint(feature)}${id}/`);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
      }
      feature.unset("id");
      feature.setId(undefined);
    });
  }

  /** Save an edit made from the version this tab loaded (`If-Match`). When another tab or person changed or
   * deleted the shape since, nothing is overwritten: the server's version replaces ours on the map. */
  function updateOnServer(feature: Feature, body: Record<string, unknown>): Promise<"saved" | "conflict"> {
    return queue.run(async () => {
      const id = feature.get("id");
      if (!id) throw new Error("This shape is not saved yet.");
      const version = feature.get("updatedAt") as string | undefined;
      try {
        const saved = await ctx.api.patch<Area | Annotation>(`${endpoint(feature)}${id}/`, body, version ? { "If-Match": `"${version}"` } : undefined);
        feature.set("updatedAt", saved.updated_at);
        return "saved";
      } catch (error) {
        if (!(error instanceof ApiError && (error.status === 412 || error.status === 404))) throw error;
        await takeServerVersion(feature);
        return "conflict";
      }
    });
  }

  async function takeServerVersion(feature: Feature): Promise<void> {
    try {
      const latest = await ctx.api.get<Area | Annotation>(`${endpoint(feature)}${feature.get("id")}/`);
      applyServerShape(feature, latest);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      removeLocal(feature);
      feature.unset("id");
      feature.setId(undefined);
    }
  }

  const CHANGED_ELSEWHERE = "This shape was changed or deleted in another tab (or by someone else): the latest version is shown.";

  const sourceOf = (feature: Feature) => (feature.get("type") === "area" ? areaSource : outlineSource);
  const addLocal = (feature: Feature) => sourceOf(feature).hasFeature(feature) || sourceOf(feature).addFeature(feature);
  const removeLocal = (feature: Feature) => {
    select.getFeatures().remove(feature);
    if (sourceOf(feature).hasFeature(feature)) sourceOf(feature).removeFeature(feature);
  };

  const shapeName = (feature: Feature) =>
    feature.get("type") === "area" ? AREA_LABELS[feature.get("kind") as AreaKind].toLowerCase() : "outline";

  async function addShape(feature: Feature): Promise<void> {
    try {
      await createOnServer(feature);
    } catch (error) {
      removeLocal(feature);
      toast(`The ${shapeName(feature)} was not saved: ${errorMessage(error)}`, "error");
      return;
    }
    undo.push({
      label: `draw ${shapeName(feature)}`,
      undo: async () => {
        removeLocal(feature);
        try {
          await deleteOnServer(feature);
        } catch (error) {
          addLocal(feature);
          throw error;
        }
      },
      redo: async () => {
        addLocal(feature);
        try {
          await createOnServer(feature);
        } catch (error) {
          removeLocal(feature);
          throw error;
        }
      },
    });
  }

  async function deleteShapes(features: Feature[]): Promise<void> {
    if (!features.length) return;
    features.forEach(removeLocal);
    const results = await Promise.allSettled(features.map((f) => deleteOnServer(f)));
    const failed = features.filter((_, i) => results[i].status === "rejected");
    failed.forEach(addLocal);
    if (failed.length) {
      toast(`Could not delete: ${errorMessage((results.find((r) => r.status === "rejected") as PromiseRejectedResult).reason)}`, "error");
    }
    const deleted = features.filter((f) => !failed.includes(f));
    if (!deleted.length) return;
    const label = deleted.length === 1 ? `delete ${shapeName(deleted[0])}` : `delete ${deleted.length} shapes`;
    undo.push({
      label,
      undo: async () => {
        for (const f of deleted) {
          addLocal(f);
          await createOnServer(f);
        }
      },
      redo: async () => {
        for (const f of deleted) {
          removeLocal(f);
          await deleteOnServer(f);
        }
      },
    });
  }

  // Reshape and move: remember geometries when the gesture starts, save and record the change when it ends.
  let before = new Map<Feature, Polygon>();
  const startGesture = (features: Feature[]) => {
    before = new Map(features.map((f) => [f, (f.getGeometry() as Polygon).clone()]));
  };
  const endGesture = async (features: Feature[], verb: string) => {
    const changed = features.filter((f) => {
      const old = before.get(f);
      return old && JSON.stringify(old.getCoordinates()) !== JSON.stringify((f.getGeometry() as Polygon).getCoordinates());
    });
    if (!changed.length) return;
    const states = changed.map((f) => ({ f, old: before.get(f)!, now: (f.getGeometry() as Polygon).clone() }));
    let outcomes: Array<"saved" | "conflict">;
    try {
      outcomes = await Promise.all(changed.map((f) => updateOnServer(f, { geometry: toApiGeometry(f) })));
    } catch (error) {
      states.forEach(({ f, old }) => f.setGeometry(old.clone()));
      await Promise.allSettled(states.map(({ f }) => updateOnServer(f, { geometry: toApiGeometry(f) })));
      toast(`The change was not saved: ${errorMessage(error)}`, "error");
      return;
    }
    if (outcomes.includes("conflict")) toast(CHANGED_ELSEWHERE, "info");
    const saved = states.filter((_, i) => outcomes[i] === "saved");
    if (!saved.length) return;
    const apply = async (which: "old" | "now") => {
      for (const state of saved) {
        state.f.setGeometry(state[which].clone());
        if ((await updateOnServer(state.f, { geometry: toApiGeometry(state.f) })) === "conflict") throw new Error(CHANGED_ELSEWHERE);
      }
    };
    undo.push({ label: `${verb} ${saved.length === 1 ? shapeName(saved[0].f) : `${saved.length} shapes`}`, undo: () => apply("old"), redo: () => apply("now") });
  };
  modify.on("modifystart", (e) => startGesture(e.features.getArray() as Feature[]));
  modify.on("modifyend", (e) => endGesture(e.features.getArray() as Feature[], "reshape"));
  translate.on("translatestart", (e) => startGesture(e.features.getArray() as Feature[]));
  translate.on("translateend", (e) => endGesture(e.features.getArray() as Feature[], "move"));

  async function runUndo(which: "undo" | "redo"): Promise<void> {
    if (draw && which === "undo" && drawingInProgress) {
      draw.removeLastPoint();
      return;
    }
    try {
      const label = which === "undo" ? undo.undoLabel : undo.redoLabel;
      const done = await undo[which]();
      if (done && label) hintFlash(`${which === "undo" ? "Undone" : "Redone"}: ${label}`);
    } catch (error) {
      toast(`Could not ${which}: ${errorMessage(error)}`, "error");
    }
  }

  // ---- Tools ----------------------------------------------------------------------------------------------
  let drawingInProgress = false;

  function setTool(next: Tool): void {
    tool = next;
    if (draw) {
      map.removeInteraction(draw);
      draw = null;
    }
    drawingInProgress = false;
    const editing = next.mode === "select";
    select.setActive(editing);
    translate.setActive(editing);
    modify.setActive(editing);
    if (!editing) select.getFeatures().clear();
    if (next.mode !== "select") {
      const shape = next.mode === "area" ? next.shape : next.shape;
      const color = next.mode === "area" ? AREA_COLORS[next.kind] : classColor(activeClassId ?? undefined);
      draw = new Draw({
        type: shape === "polygon" || shape === "freehand" ? "Polygon" : "Circle",
        geometryFunction: shape === "rectangle" ? createBox() : undefined,
        freehand: shape === "freehand",
        style: sketchStyle,
        stopClick: true,
      });
      mapEl.style.setProperty("--tool-color", color);
      draw.on("drawstart", () => (drawingInProgress = true));
      draw.on("drawabort", () => (drawingInProgress = false));
      draw.on("drawend", (event) => {
        drawingInProgress = false;
        const feature = event.feature as Feature;
        const resolution = map.getView().getResolution() ?? 1;
        let geometry = feature.getGeometry();
        if (shape === "circle") {
          const circle = geometry as unknown as Circle;
          if (!(circle.getRadius() > resolution * 2)) return;
          geometry = new Polygon([circleToPolygon(circle.getCenter() as Coord, circle.getRadius(), 48)]);
        } else if (shape === "freehand") {
          geometry = (geometry as Polygon).simplify(resolution * 1.2) as Polygon;
        }
        const polygon = geometry as Polygon;
        const finished = new Feature(polygon);
        if (!isDrawable(polygon.getCoordinates()[0] as Ring, (resolution * 3) ** 2)) {
          hintFlash("That shape was too small: nothing was drawn.");
          return;
        }
        if (next.mode === "area") finished.setProperties({ type: "area", kind: next.kind });
        else finished.setProperties({ type: "outline", classId: activeClassId });
        // The Draw interaction adds nothing itself (no source): the finished shape is added here, once.
        setTimeout(() => {
          addLocal(finished);
          addShape(finished);
        });
      });
      map.addInteraction(draw);
      addSnaps();
    }
    mapEl.dataset.tool = toolKey(next);
    renderToolbar();
    hintEl.textContent = toolInfo(next).hint;
  }

  let flashTimer: number | undefined;
  function hintFlash(text: string): void {
    hintEl.textContent = text;
    hintEl.classList.add("flash");
    window.clearTimeout(flashTimer);
    flashTimer = window.setTimeout(() => {
      hintEl.classList.remove("flash");
      hintEl.textContent = toolInfo(tool).hint;
    }, 2200);
  }

  function toolButton(target: Tool, content: (Node | string)[], extraClass = ""): HTMLButtonElement {
    const info = toolInfo(target);
    const active = toolKey(target) === toolKey(tool);
    return h(
      "button",
      {
        class: `tool ${extraClass} ${active ? "active" : ""}`,
        title: `${info.label} (${info.key})`,
        "aria-pressed": String(active),
        "data-tool": toolKey(target),
        onclick: () => setTool(target),
      },
      ...content,
    );
  }

  function renderToolbar(): void {
    clear(toolbar);
    const areaButton = (kind: AreaKind, label: string) =>
      toolButton({ mode: "area", kind, shape: areaShape }, [h("span", { class: "dot", style: { background: AREA_COLORS[kind] } }), label], "tool-text");
    const outlineButton = (shape: DrawKind, iconName: string) => toolButton({ mode: "outline", shape }, [icon(iconName)]);
    const shapeToggle = h(
      "button",
      {
        class: "tool tool-small",
        title: `Areas are drawn as ${areaShape === "rectangle" ? "rectangles" : "polygons"}: click to switch`,
        "data-testid": "area-shape",
        onclick: () => {
          areaShape = areaShape === "rectangle" ? "polygon" : "rectangle";
          if (tool.mode === "area") setTool({ ...tool, shape: areaShape });
          else renderToolbar();
        },
      },
      icon(areaShape === "rectangle" ? "rect" : "polygon", 16),
    );
    const active = classes.find((c) => c.id === activeClassId);
    toolbar.append(
      h("div", { class: "tool-group" }, toolButton({ mode: "select" }, [icon("select")])),
      h("div", { class: "tool-group" }, h("span", { class: "group-label" }, "Areas"), areaButton("training", "Training"), areaButton("testing", "Testing"), areaButton("accuracy", "Accuracy"), shapeToggle),
      h(
        "div",
        { class: "tool-group" },
        h("span", { class: "group-label" }, active ? h("span", { class: "dot", style: { background: active.color } }) : null, active ? active.name : "Outline"),
        outlineButton("polygon", "polygon"),
        outlineButton("rectangle", "rect"),
        outlineButton("circle", "circle"),
        outlineButton("freehand", "freehand"),
      ),
      h(
        "div",
        { class: "tool-group" },
        h("button", { class: "tool", title: `Undo${undo.undoLabel ? `: ${undo.undoLabel}` : ""} (Ctrl+Z)`, disabled: !undo.canUndo, "data-testid": "undo", onclick: () => runUndo("undo") }, icon("undo")),
        h("button", { class: "tool", title: `Redo${undo.redoLabel ? `: ${undo.redoLabel}` : ""} (Ctrl+Shift+Z)`, disabled: !undo.canRedo, "data-testid": "redo", onclick: () => runUndo("redo") }, icon("redo")),
        h("button", { class: "tool", title: "Delete the selection (Delete)", disabled: select.getFeatures().getLength() === 0, "data-testid": "delete", onclick: () => deleteShapes(select.getFeatures().getArray().slice() as Feature[]) }, icon("trash")),
        h("button", { class: `tool ${snapping ? "active" : ""}`, title: `Snapping ${snapping ? "on" : "off"} (S)`, "aria-pressed": String(snapping), "data-testid": "snap", onclick: () => toggleSnap() }, icon("magnet")),
      ),
    );
  }
  undo.onChange(renderToolbar);
  select.getFeatures().on(["add", "remove"], () => renderToolbar());

  function toggleSnap(): void {
    snapping = !snapping;
    snaps.forEach((s) => s.setActive(snapping));
    renderToolbar();
    hintFlash(`Snapping ${snapping ? "on" : "off"}`);
  }

  // ---- Help overlay -----------------------------------------------------------------------------------------
  let helpEl: HTMLElement | null = null;
  function toggleHelp(force?: boolean): void {
    const show = force ?? !helpEl;
    if (!show) {
      helpEl?.remove();
      helpEl = null;
      return;
    }
    if (helpEl) return;
    helpEl = h(
      "div",
      { class: "modal-backdrop", "data-testid": "help", onclick: (e: Event) => e.target === helpEl && toggleHelp(false) },
      h(
        "div",
        { class: "modal modal-wide", role: "dialog", "aria-label": "Keyboard shortcuts" },
        h("h2", null, "Keyboard shortcuts"),
        h("p", { class: "muted" }, "Scroll to zoom and drag to pan at any time, even in the middle of a drawing."),
        h("dl", { class: "shortcuts" }, ...SHORTCUTS.flatMap(([key, text]) => [h("dt", null, ...key.split(" ").map((k) => (k === "+" || k === "/" || k === "or" || k === "–" ? ` ${k} ` : h("kbd", null, k)))), h("dd", null, text)])),
        h("div", { class: "modal-actions" }, h("button", { class: "btn btn-primary", onclick: () => toggleHelp(false) }, "Got it")),
      ),
    );
    document.body.append(helpEl);
  }
  disposers.push(() => toggleHelp(false));

  // ---- Keyboard -------------------------------------------------------------------------------------------
  const onKey = (event: KeyboardEvent) => {
    const target = event.target as HTMLElement;
    if (target.closest("input, textarea, select, [contenteditable]")) return;
    const key = event.key.toLowerCase();
    const mod = event.ctrlKey || event.metaKey;
    if (mod && key === "z") {
      event.preventDefault();
      runUndo(event.shiftKey ? "redo" : "undo");
      return;
    }
    if (mod && key === "y") {
      event.preventDefault();
      runUndo("redo");
      return;
    }
    if (mod || event.altKey) return;
    if (event.key === "?") {
      toggleHelp();
      return;
    }
    if (event.key === "Escape") {
      if (helpEl) toggleHelp(false);
      else if (drawingInProgress) draw?.abortDrawing();
      else if (tool.mode !== "select") setTool({ mode: "select" });
      else select.getFeatures().clear();
      return;
    }
    if (helpEl) return;
    if (event.key === "Enter" && draw && drawingInProgress) {
      draw.finishDrawing();
      return;
    }
    if (event.key === "Backspace" && draw && drawingInProgress) {
      event.preventDefault();
      draw.removeLastPoint();
      return;
    }
    if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      deleteShapes(select.getFeatures().getArray().slice() as Feature[]);
      return;
    }
    if (key === "v") setTool({ mode: "select" });
    else if (key in AREA_KEYS) setTool({ mode: "area", kind: AREA_KEYS[key], shape: event.shiftKey ? "polygon" : areaShape });
    else if (key in OUTLINE_KEYS) setTool({ mode: "outline", shape: OUTLINE_KEYS[key] });
    else if (key === "s") toggleSnap();
    else if (/^[1-9]$/.test(event.key) && classes[Number(event.key) - 1]) chooseClass(classes[Number(event.key) - 1].id);
  };
  document.addEventListener("keydown", onKey);
  disposers.push(() => document.removeEventListener("keydown", onKey));

  // ---- Guidance -------------------------------------------------------------------------------------------
  let guidanceFrame = 0;
  function scheduleGuidance(): void {
    if (guidanceFrame) return;
    guidanceFrame = requestAnimationFrame(() => {
      guidanceFrame = 0;
      renderGuidance();
    });
  }
  [areaSource, outlineSource].forEach((source) => source.on(["addfeature", "removefeature", "changefeature"], scheduleGuidance));

  function zoomTo(feature: Feature): void {
    const extent = feature.getGeometry()!.getExtent();
    map.getView().fit(extent, { padding: [120, 120, 120, 120], duration: 350, maxZoom: map.getView().getZoom()! + 2 });
  }

  function renderGuidance(): void {
    const areas = areaSource.getFeatures();
    const outlines = outlineSource.getFeatures();
    const byKind = (kind: AreaKind) => areas.filter((f) => f.get("kind") === kind);
    const training = byKind("training");
    const result = guidance({
      training: training.map(ringOf),
      testing: byKind("testing").map(ringOf),
      accuracy: byKind("accuracy").map(ringOf),
      outlines: outlines.map(ringOf),
    });
    const flagged = new Set(result.flagged);
    outlines.forEach((f, i) => {
      if (Boolean(f.get("flagged")) !== flagged.has(i)) f.set("flagged", flagged.has(i), true);
    });
    outlineLayer.changed();
    mapEl.dataset.flagged = String(result.flagged.length);
    clear(checklist);
    const first = result.steps.findIndex((s) => !s.done && !s.optional);
    result.steps.forEach((step, i) => {
      checklist.append(
        h(
          "div",
          { class: `step ${step.done ? "done" : ""} ${i === first ? "current" : ""} ${step.optional ? "optional" : ""}`, "data-step": step.id, "data-done": String(step.done) },
          h("span", { class: "step-mark" }, step.done ? icon("check", 14) : String(i + 1)),
          h("div", null, h("strong", null, step.title), i === first || (!step.done && step.optional && first === -1) ? h("p", null, step.hint) : null),
        ),
      );
    });
    for (const warning of result.warnings) {
      const isFlag = warning.includes("outside");
      const targets = isFlag ? outlines.filter((_, i) => flagged.has(i)) : result.emptyTraining.map((i) => training[i]);
      checklist.append(
        h(
          "div",
          { class: "warning", "data-testid": isFlag ? "warning-flagged" : "warning-empty" },
          icon("warn", 16),
          h("div", null, h("p", null, warning), targets.length ? h("button", { class: "link-btn", onclick: () => zoomTo(targets[checkCursor++ % targets.length]) }, "Show me") : null),
        ),
      );
    }
    if (training.length && result.warnings.length === 0) {
      checklist.append(
        h(
          "div",
          { class: "tip" },
          h("p", null, "Missed objects are the most common mistake. Step through your training areas and look for anything without an outline."),
          h("button", { class: "link-btn", "data-testid": "check-areas", onclick: () => zoomTo(training[checkCursor++ % training.length]) }, `Check training areas (${training.length})`),
        ),
      );
    }
    if (result.ready) checklist.append(h("p", { class: "all-set" }, icon("check", 14), "All set: this is what training will need."));
    renderClasses();
  }

  // ---- Side panel: images, classes, layers ---------------------------------------------------------------------
  function chooseClass(id: string): void {
    activeClassId = id;
    const selected = select.getFeatures().getArray().filter((f) => f.get("type") === "outline" && f.get("classId") !== id) as Feature[];
    if (selected.length) reclassify(selected, id);
    if (tool.mode === "outline") mapEl.style.setProperty("--tool-color", classColor(id));
    renderClasses();
    renderToolbar();
  }

  async function reclassify(features: Feature[], classId: string): Promise<void> {
    const old = features.map((f) => f.get("classId") as string);
    const apply = async (ids: string[]) => {
      for (const [i, f] of features.entries()) {
        f.set("classId", ids[i]);
        await updateOnServer(f, { detector_class: ids[i] });
      }
    };
    try {
      await apply(features.map(() => classId));
      undo.push({ label: "change object kind", undo: () => apply(old), redo: () => apply(features.map(() => classId)) });
    } catch (error) {
      features.forEach((f, i) => f.set("classId", old[i]));
      toast(errorMessage(error), "error");
    }
  }

  function renderClasses(): void {
    clear(classesEl);
    const counts = new Map<string, number>();
    for (const f of outlineSource.getFeatures()) counts.set(f.get("classId"), (counts.get(f.get("classId")) ?? 0) + 1);
    classes.forEach((c, i) => {
      const colorInput = h("input", {
        type: "color",
        value: c.color,
        class: "color-input small",
        title: "Change colour",
        "aria-label": `Colour of ${c.name}`,
        onchange: async () => {
          try {
            const updated = await ctx.api.patch<DetectorClass>(`detector-classes/${c.id}/`, { color: colorInput.value.toUpperCase() });
            c.color = updated.color;
            outlineLayer.changed();
            renderClasses();
            renderToolbar();
          } catch (e) {
            toast(errorMessage(e), "error");
          }
        },
      });
      classesEl.append(
        h(
          "div",
          { class: `class-item ${c.id === activeClassId ? "active" : ""}`, "data-testid": "class-item", onclick: (e: Event) => (e.target as HTMLElement).tagName !== "INPUT" && chooseClass(c.id) },
          colorInput,
          h("span", { class: "class-name" }, c.name),
          h("span", { class: "count", title: "Outlines on this image" }, String(counts.get(c.id) ?? 0)),
          i < 9 ? h("kbd", null, String(i + 1)) : null,
        ),
      );
    });
    const nameInput = h("input", { placeholder: "Add another kind of object", maxlength: 100, "aria-label": "New kind of object" });
    classesEl.append(
      h(
        "form",
        {
          class: "add-class",
          onsubmit: async (e: Event) => {
            e.preventDefault();
            if (!detector || !nameInput.value.trim()) return;
            try {
              const created = await ctx.api.post<DetectorClass>("detector-classes/", {
                detector: detector.id,
                name: nameInput.value.trim(),
                color: PALETTE[classes.length % PALETTE.length],
                position: classes.length,
              });
              classes.push(created);
              chooseClass(created.id);
            } catch (error) {
              toast(errorMessage(error), "error");
            }
          },
        },
        nameInput,
        h("button", { class: "icon-btn", type: "submit", title: "Add", "aria-label": "Add" }, icon("plus", 16)),
      ),
    );
  }

  function renderImages(): void {
    clear(imagesEl);
    if (!attachments.length) imagesEl.append(h("p", { class: "muted small" }, "No image yet: add one below to start drawing."));
    for (const a of attachments) {
      const info = imageInfo.get(a.image);
      if (!info) continue;
      imagesEl.append(
        h(
          "button",
          { class: `ws-image ${current?.id === info.id ? "active" : ""}`, "data-testid": "ws-image", "data-image-id": info.id, onclick: () => openImage(info.id) },
          thumbnail(ctx.api, info, 40),
          h("span", { class: "ws-image-name" }, info.name, info.status !== "ready" ? imageStatusBadge(info.status) : null),
        ),
      );
    }
    clear(attachEl);
    const attached = new Set(attachments.map((a) => a.image));
    const candidates = projectImages.filter((i) => !attached.has(i.id) && i.status !== "failed");
    if (!candidates.length) return;
    const picker = h("select", { "aria-label": "Image to add", "data-testid": "attach-select" }, ...candidates.map((i) => h("option", { value: i.id }, i.status === "ready" ? i.name : `${i.name} (processing)`)));
    attachEl.append(
      picker,
      h(
        "button",
        {
          class: "btn btn-small",
          "data-testid": "attach-button",
          onclick: async () => {
            if (!detector) return;
            try {
              await ctx.api.post("detector-images/", { detector: detector.id, image: picker.value });
              await loadAttachments();
              openImage(picker.value);
            } catch (e) {
              toast(errorMessage(e), "error");
            }
          },
        },
        icon("plus", 14),
        "Add image",
      ),
    );
  }

  function renderLayers(): void {
    clear(layersEl);
    const row = (label: string, color: string | null, checked: boolean, onChange: (on: boolean) => void, testid: string, note?: string) => {
      const input = h("input", { type: "checkbox", checked, "data-testid": `layer-${testid}`, onchange: () => onChange(input.checked) });
      return h("label", { class: "layer-row" }, input, color ? h("span", { class: "swatch", style: { background: color } }) : h("span", { class: "swatch swatch-empty" }), h("span", null, label, note ? h("small", { class: "muted" }, ` ${note}`) : null));
    };
    const kindToggle = (kind: AreaKind, label: string) =>
      row(label, AREA_COLORS[kind], visibleKinds.has(kind), (on) => {
        if (on) visibleKinds.add(kind);
        else visibleKinds.delete(kind);
        areaLayer.changed();
      }, kind);
    layersEl.append(
      row("Image", null, imageLayer.getVisible(), (on) => imageLayer.setVisible(on), "image"),
      kindToggle("training", "Training areas"),
      kindToggle("testing", "Testing areas"),
      kindToggle("accuracy", "Accuracy areas"),
      row("Outlines", classes[0]?.color ?? "#1C7ED6", outlineLayer.getVisible(), (on) => outlineLayer.setVisible(on), "outlines"),
      row("Outlines outside areas", FLAG_COLOR, true, (on) => {
        outlineLayer.setStyle((f) => (!on && f.get("flagged") ? undefined : outlineStyle(classColor(f.get("classId")), Boolean(f.get("flagged")))));
      }, "flagged"),
      row("Predictions", PREDICTION_COLOR, predictionLayer.getVisible(), (on) => predictionLayer.setVisible(on), "predictions", "(testing areas)"),
      row("Misses, false detections, unoutlined finds", REVIEW_COLORS.miss, reviewLayer.getVisible(), (on) => reviewLayer.setVisible(on), "review"),
      row("Detected objects", classes[0]?.color ?? "#1C7ED6", detectionLayer.getVisible(), (on) => detectionLayer.setVisible(on), "detections"),
      row("Online basemap", null, Boolean(basemapLayer?.getVisible()), (on) => {
        if (on && !basemapLayer) {
          basemapLayer = new TileLayer({ source: new OSM(), zIndex: 0 });
          map.addLayer(basemapLayer);
        }
        basemapLayer?.setVisible(on);
      }, "basemap", "(OpenStreetMap, needs internet)"),
    );
  }

  function showResults(predictions: FeatureCollection | null, review: FeatureCollection | null): void {
    const read = (fc: FeatureCollection | null) => (fc ? (geojson.readFeatures(fc) as Feature[]) : []);
    predictionSource.clear();
    reviewSource.clear();
    predictionSource.addFeatures(read(predictions));
    reviewSource.addFeatures(read(review));
    mapEl.dataset.predictions = String(predictionSource.getFeatures().filter(onOpenImage).length);
    mapEl.dataset.review = String(reviewSource.getFeatures().filter(onOpenImage).length);
  }

  /** Zoom to the `index`-th review feature of `kind` on the open image, with room around it to judge it;
   * returns how many there are on this image. */
  function focusReview(kind: ReviewKind, index: number): number {
    const found = reviewSource.getFeatures().filter((f) => onOpenImage(f) && f.get("kind") === kind);
    if (!found.length) return 0;
    const feature = found[((index % found.length) + found.length) % found.length];
    const [x0, y0, x1, y1] = feature.getGeometry()!.getExtent();
    const room = Math.max(4 * Math.max(x1 - x0, y1 - y0), 40); // map units (metres in Web Mercator): context to judge it
    if (!reviewLayer.getVisible()) {
      reviewLayer.setVisible(true);
      renderLayers();
    }
    map.getView().fit([x0 - room, y0 - room, x1 + room, y1 + room], { duration: 350 });
    mapEl.dataset.focused = `${kind}:${found.indexOf(feature)}`;
    return found.length;
  }

  // ---- Loading ---------------------------------------------------------------------------------------------
  function applyServerShape(feature: Feature, shape: Area | Annotation): void {
    feature.setGeometry(geojson.readGeometry(shape.geometry) as Polygon);
    if ("kind" in shape) feature.setProperties({ type: "area", kind: shape.kind });
    else feature.setProperties({ type: "outline", classId: shape.detector_class });
    feature.set("id", shape.id);
    feature.set("updatedAt", shape.updated_at);
    feature.setId(shape.id);
  }

  /** The detector's areas and outlines on one image, as the server has them. */
  function listShapes(detectorId: string, imageId: string): Promise<[Area[], Annotation[]]> {
    return Promise.all([
      ctx.api.list<Area>("areas/", { detector: detectorId, image: imageId }),
      ctx.api.list<Annotation>("annotations/", { detector: detectorId, image: imageId }),
    ]);
  }

  function shapeFeature(shape: Area | Annotation): Feature {
    const feature = new Feature();
    applyServerShape(feature, shape);
    return feature;
  }

  /** Back in this tab (focus, or the tab shown again): take what other tabs or people drew, changed or
   * deleted meanwhile. Skipped while an edit is being drawn or saved here; the next return tries again. */
  async function refreshShapes(): Promise<void> {
    const imageId = current?.id;
    if (!detector || !imageId || mapEl.dataset.ready !== "true" || drawingInProgress || queue.busy) return;
    let areas: Area[];
    let annotations: Annotation[];
    try {
      [areas, annotations] = await listShapes(detector.id, imageId);
    } catch {
      return;
    }
    if (!alive || current?.id !== imageId || drawingInProgress || queue.busy) return;
    let changes = 0;
    for (const [source, shapes] of [[areaSource, areas], [outlineSource, annotations]] as const) {
      const local = new Map(source.getFeatures().filter((f) => f.get("id")).map((f) => [f.get("id") as string, f]));
      for (const shape of shapes as Array<Area | Annotation>) {
        const feature = local.get(shape.id);
        local.delete(shape.id);
        if (!feature) {
          source.addFeature(shapeFeature(shape));
          changes++;
        } else if (feature.get("updatedAt") !== shape.updated_at) {
          applyServerShape(feature, shape);
          changes++;
        }
      }
      for (const gone of local.values()) {
        removeLocal(gone);
        changes++;
      }
    }
    mapEl.dataset.refreshed = String(Number(mapEl.dataset.refreshed ?? 0) + 1);
    if (changes) hintFlash(`Updated with ${changes === 1 ? "1 change" : `${changes} changes`} made elsewhere`);
  }
  const onReturn = () => {
    if (document.visibilityState === "visible") refreshShapes();
  };
  window.addEventListener("focus", onReturn);
  document.addEventListener("visibilitychange", onReturn);
  disposers.push(() => {
    window.removeEventListener("focus", onReturn);
    document.removeEventListener("visibilitychange", onReturn);
  });

  async function loadAttachments(): Promise<void> {
    if (!detector) return;
    const [links, images] = await Promise.all([
      ctx.api.list<DetectorImage>("detector-images/", { detector: detector.id }),
      detector.project ? ctx.api.list<ImageInfo>("images/", { project: detector.project }) : Promise.resolve([] as ImageInfo[]),
    ]);
    attachments = links;
    projectImages = images;
    for (const i of images) imageInfo.set(i.id, i);
    const missing = links.filter((l) => !imageInfo.has(l.image));
    await Promise.all(missing.map(async (l) => imageInfo.set(l.image, await ctx.api.get<ImageInfo>(`images/${l.image}/`))));
    renderImages();
  }

  async function setImageLayer(image: ImageInfo): Promise<void> {
    imageLayer.setSource(null);
    mapNotice.hidden = true;
    if (image.status !== "ready") {
      mapNotice.hidden = false;
      mapNotice.textContent =
        image.status === "failed"
          ? `This image could not be used: ${image.error || "unknown reason"}`
          : "This image is still being prepared. Its picture appears here when it is ready.";
      return;
    }
    let tiles: TileJson | null = null;
    try {
      tiles = await ctx.api.get<TileJson>(`images/${image.id}/tilejson.json`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) toast(errorMessage(error), "error");
    }
    if (!alive || current?.id !== image.id) return;
    if (!tiles?.tiles?.length) {
      mapNotice.hidden = false;
      mapNotice.textContent = "The image preview is not available on this server yet: its outline is shown instead. You can still draw.";
      return;
    }
    const extent = tiles.bounds ? transformExtent(tiles.bounds, "EPSG:4326", "EPSG:3857") : undefined;
    imageLayer.setExtent(extent);
    const source = new XYZ({
      urls: tiles.tiles,
      tileSize: tiles.tilesize ?? 256,
      minZoom: tiles.minzoom ?? 0,
      maxZoom: tiles.maxzoom ?? 22,
      transition: 150,
    });
    // Tiles still loading, for the loading indicator and for tests that wait for a settled map.
    let pending = 0;
    const track = (delta: number) => () => {
      pending = Math.max(0, pending + delta);
      mapEl.dataset.tilesPending = String(pending);
    };
    source.on("tileloadstart", track(1));
    source.on(["tileloadend", "tileloaderror"], track(-1));
    imageLayer.setSource(source);
  }

  async function openImage(imageId: string): Promise<void> {
    const info = imageInfo.get(imageId) ?? (await ctx.api.get<ImageInfo>(`images/${imageId}/`));
    if (!alive || !detector) return;
    current = info;
    predictionLayer.changed();
    reviewLayer.changed();
    mapEl.dataset.predictions = String(predictionSource.getFeatures().filter(onOpenImage).length);
    mapEl.dataset.review = String(reviewSource.getFeatures().filter(onOpenImage).length);
    undo.clear();
    select.getFeatures().clear();
    areaSource.clear();
    outlineSource.clear();
    footprintSource.clear();
    mapEl.dataset.ready = "false";
    const url = new URL(window.location.href);
    url.searchParams.set("image", imageId);
    history.replaceState(null, "", url.pathname + url.search);
    renderImages();
    if (info.footprint) {
      const footprint = geojson.readFeature({ type: "Feature", geometry: info.footprint, properties: {} }) as Feature;
      footprintSource.addFeature(footprint);
      map.getView().fit(footprint.getGeometry()!.getExtent(), { padding: [90, 60, 70, 60] });
    }
    setImageLayer(info);
    try {
      const [areas, annotations] = await listShapes(detector.id, imageId);
      if (!alive || current?.id !== imageId) return;
      areaSource.addFeatures(areas.map(shapeFeature));
      outlineSource.addFeatures(annotations.map(shapeFeature));
      if (!info.footprint && (areas.length || annotations.length)) {
        const extent = (areaSource.getFeatures().length ? areaSource.getExtent() : outlineSource.getExtent())!;
        map.getView().fit(extent, { padding: [90, 60, 70, 60] });
      }
    } catch (error) {
      toast(errorMessage(error), "error");
    }
    renderGuidance();
    mapEl.dataset.ready = "true";
    mapEl.dataset.imageId = imageId;
    mapEl.focus({ preventScroll: true });
  }

  (async () => {
    try {
      detector = await ctx.api.get<Detector>(`detectors/${detectorId}/`);
      if (!alive) return;
      classes = detector.classes.slice();
      activeClassId = classes[0]?.id ?? null;
      titleEl.textContent = detector.name;
      ctx.setTitle(detector.name);
      if (detector.project) {
        project = await ctx.api.get<Project>(`projects/${detector.project}/`);
        backLink.setAttribute("href", `${BASE}projects/${project.id}`);
        clear(backLink);
        backLink.append(icon("back", 14), project.name);
        ctx.setCrumbs([{ label: "Projects", href: BASE }, { label: project.name, href: `${BASE}projects/${project.id}` }, { label: detector.name }]);
      } else {
        ctx.setCrumbs([{ label: "Projects", href: BASE }, { label: detector.name }]);
      }
      renderLayers();
      renderClasses();
      const panel = trainingPanel(ctx, detector, { showResults, focusReview });
      trainHost.replaceWith(panel.element);
      disposers.push(() => panel.dispose());
      setTool({ mode: "select" });
      await loadAttachments();
      const readyImages = () =>
        attachments.map((a) => imageInfo.get(a.image)).filter((i): i is ImageInfo => Boolean(i && i.status === "ready"));
      const detect = detectionPanel(ctx, detector, { images: readyImages, currentImageId: () => current?.id ?? null, showRun: showDetection });
      detectHost.append(detect.element);
      disposers.push(() => detect.dispose());
      const wanted = new URL(window.location.href).searchParams.get("image");
      const first = attachments.find((a) => a.image === wanted) ?? attachments.find((a) => imageInfo.get(a.image)?.status === "ready") ?? attachments[0];
      if (first) await openImage(first.image);
      else {
        mapNotice.hidden = false;
        mapNotice.textContent = "Add an image from the side panel to start drawing.";
        renderGuidance();
        mapEl.dataset.ready = "true";
      }
      if (!localStorage.getItem("picterra.help-seen")) {
        localStorage.setItem("picterra.help-seen", "1");
        hintFlash("New here? Press ? for the keyboard shortcuts.");
      }
    } catch (error) {
      titleEl.textContent = "Detector unavailable";
      toast(errorMessage(error), "error");
    }
  })();

  // Resize the map when the window or side panel changes size.
  const observer = new ResizeObserver(() => map.updateSize());
  observer.observe(mapEl);
  disposers.push(() => observer.disconnect());

  // A global hook for debugging in the browser console and for the browser tests' introspection.
  (window as unknown as Record<string, unknown>).picterraWorkspace = { map, areaSource, outlineSource, undo, select, center: () => getCenter(map.getView().calculateExtent()) };

  return () => {
    alive = false;
    disposers.forEach((d) => d());
    delete (window as unknown as Record<string, unknown>).picterraWorkspace;
  };
}
