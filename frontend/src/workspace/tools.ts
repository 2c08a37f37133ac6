// The workspace's drawing and editing tools: select/move/reshape, areas (rectangle or polygon) and outlines
// (polygon, rectangle, circle, freehand), snapping, the toolbar, the keyboard shortcuts and their help overlay,
// and the hint line under the toolbar. Finished shapes and edits go to the shape store, which saves them.

import Feature from "ol/Feature";
import type Circle from "ol/geom/Circle";
import Polygon from "ol/geom/Polygon";
import Draw, { createBox } from "ol/interaction/Draw";
import Modify from "ol/interaction/Modify";
import Select from "ol/interaction/Select";
import Snap from "ol/interaction/Snap";
import Translate from "ol/interaction/Translate";

import { AREA_COLORS, AREA_LABELS } from "../areas";
import { clear, errorMessage, h, icon, toast } from "../dom";
import { type Coord, circleToPolygon, isDrawable, type Ring } from "../geometry";
import { selectedStyles, sketchStyle } from "../styles";
import type { AreaKind, DetectorClass } from "../types";
import type { WorkspaceMap } from "./map";
import type { ShapeStore } from "./store";

type DrawKind = "polygon" | "rectangle" | "circle" | "freehand";
export type Tool = { mode: "select" } | { mode: "area"; kind: AreaKind; shape: "rectangle" | "polygon" } | { mode: "outline"; shape: DrawKind };

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

export interface ToolsOptions {
  ws: WorkspaceMap;
  store: ShapeStore<Feature, Polygon>;
  mapEl: HTMLElement;
  hintEl: HTMLElement;
  toolbar: HTMLElement;
  classes(): DetectorClass[];
  activeClassId(): string | null;
  chooseClass(id: string): void;
  classColor(id: string | undefined): string;
}

export type Tools = ReturnType<typeof createTools>;

export function createTools({ ws, store, mapEl, hintEl, toolbar, classes, activeClassId, chooseClass, classColor }: ToolsOptions) {
  const { map } = ws;
  const undo = store.undo;
  const disposers: Array<() => void> = [];
  let tool: Tool = { mode: "select" };
  let areaShape: "rectangle" | "polygon" = "rectangle";
  let snapping = true;
  let drawingInProgress = false;

  const select = new Select({ layers: [ws.outlineLayer, ws.areaLayer], hitTolerance: 4, style: selectedStyles });
  const translate = new Translate({ features: select.getFeatures() });
  const modify = new Modify({ features: select.getFeatures(), pixelTolerance: 10 });
  const snaps = [new Snap({ source: ws.outlineSource, pixelTolerance: 8 }), new Snap({ source: ws.areaSource, pixelTolerance: 8 })];
  let draw: Draw | null = null;

  map.addInteraction(select);
  map.addInteraction(translate);
  map.addInteraction(modify);
  const addSnaps = () => snaps.forEach((s) => (map.removeInteraction(s), map.addInteraction(s), s.setActive(snapping)));
  addSnaps();

  const selected = () => select.getFeatures().getArray().slice() as Feature[];
  const deleteSelected = () => store.delete(selected());

  // Reshape and move: remember geometries when the gesture starts, save and record the change when it ends.
  let before = new Map<Feature, Polygon>();
  const startGesture = (features: Feature[]) => {
    before = new Map(features.map((f) => [f, (f.getGeometry() as Polygon).clone()]));
  };
  const endGesture = (features: Feature[], verb: string) => {
    const changed = features.filter((f) => {
      const old = before.get(f);
      return old && JSON.stringify(old.getCoordinates()) !== JSON.stringify((f.getGeometry() as Polygon).getCoordinates());
    });
    return store.reshaped(
      changed.map((f) => ({ shape: f, old: before.get(f)!, now: (f.getGeometry() as Polygon).clone() })),
      verb,
    );
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

  function setTool(next: Tool): void {
    tool = next;
    if (draw) {
      map.removeInteraction(draw);
      draw = null;
    }
    setDrawing(false);
    const editing = next.mode === "select";
    select.setActive(editing);
    translate.setActive(editing);
    modify.setActive(editing);
    if (!editing) select.getFeatures().clear();
    if (next.mode !== "select") {
      const shape = next.shape;
      const color = next.mode === "area" ? AREA_COLORS[next.kind] : classColor(activeClassId() ?? undefined);
      draw = new Draw({
        type: shape === "polygon" || shape === "freehand" ? "Polygon" : "Circle",
        geometryFunction: shape === "rectangle" ? createBox() : undefined,
        freehand: shape === "freehand",
        style: sketchStyle,
        stopClick: true,
      });
      mapEl.style.setProperty("--tool-color", color);
      draw.on("drawstart", () => setDrawing(true));
      draw.on("drawabort", () => setDrawing(false));
      draw.on("drawend", (event) => {
        setDrawing(false);
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
        else finished.setProperties({ type: "outline", classId: activeClassId() });
        // The Draw interaction adds nothing itself (no source): the finished shape is added here, once.
        setTimeout(() => store.add(finished));
      });
      map.addInteraction(draw);
      addSnaps();
    }
    mapEl.dataset.tool = toolKey(next);
    renderToolbar();
    hintEl.textContent = toolInfo(next).hint;
  }

  function setDrawing(on: boolean): void {
    drawingInProgress = on;
    mapEl.dataset.drawing = String(on);
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
    const active = classes().find((c) => c.id === activeClassId());
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
        h("button", { class: "tool", title: "Delete the selection (Delete)", disabled: select.getFeatures().getLength() === 0, "data-testid": "delete", onclick: () => deleteSelected() }, icon("trash")),
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
      deleteSelected();
      return;
    }
    const list = classes();
    if (key === "v") setTool({ mode: "select" });
    else if (key in AREA_KEYS) setTool({ mode: "area", kind: AREA_KEYS[key], shape: event.shiftKey ? "polygon" : areaShape });
    else if (key in OUTLINE_KEYS) setTool({ mode: "outline", shape: OUTLINE_KEYS[key] });
    else if (key === "s") toggleSnap();
    else if (/^[1-9]$/.test(event.key) && list[Number(event.key) - 1]) chooseClass(list[Number(event.key) - 1].id);
  };
  document.addEventListener("keydown", onKey);
  disposers.push(() => document.removeEventListener("keydown", onKey));

  return {
    select,
    setTool,
    renderToolbar,
    hintFlash,
    toggleHelp,
    /** Outlines selected now. */
    selected,
    /** A shape is being drawn (not finished yet). */
    drawing: () => drawingInProgress,
    /** The outline tool takes the colour of the chosen class. */
    classChosen(id: string): void {
      if (tool.mode === "outline") mapEl.style.setProperty("--tool-color", classColor(id));
      renderToolbar();
    },
    dispose: () => disposers.forEach((d) => d()),
  };
}
