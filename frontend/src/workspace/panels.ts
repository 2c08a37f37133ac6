// The workspace's side panels below Train and Detect: the "Next steps" checklist (guidance, with outlines
// outside every area flagged on the map), the images of the detector (and adding one), the kinds of object
// to find (classes: choose, recolour, add), and the layer toggles.

import type Feature from "ol/Feature";
import type Polygon from "ol/geom/Polygon";

import type { AppContext } from "../app";
import { AREA_COLORS } from "../areas";
import { clear, errorMessage, h, icon, toast } from "../dom";
import { guidance } from "../guidance";
import { reservedNear } from "../palette";
import { FLAG_COLOR, PREDICTION_COLOR, REVIEW_COLORS, SUGGESTION_COLOR } from "../styles";
import { thumbnail } from "../thumbs";
import type { AreaKind, DetectorClass, DetectorImage } from "../types";
import { imageStatusBadge, PALETTE } from "../views/project";
import { opacityRow } from "./layers";
import { ringOf, type WorkspaceMap } from "./map";
import { classColor, type WorkspaceState } from "./state";
import type { ShapeStore } from "./store";

export interface PanelOptions {
  ctx: AppContext;
  state: WorkspaceState;
  ws: WorkspaceMap;
  store: ShapeStore<Feature, Polygon>;
  mapEl: HTMLElement;
  checklist: HTMLElement;
  imagesEl: HTMLElement;
  attachEl: HTMLElement;
  classesEl: HTMLElement;
  layersEl: HTMLElement;
  /** The outlines selected on the map now. */
  selected(): Feature[];
  /** A class was chosen (the toolbar shows it). */
  classChosen(id: string): void;
  /** The class list or a colour changed. */
  classesChanged(): void;
  openImage(id: string): void;
  loadAttachments(): Promise<void>;
  /** A change detector's pair changed (its second date): the swipe view shows the new one. */
  secondDateChanged(): void;
}

export type Panels = ReturnType<typeof createPanels>;

export function createPanels(o: PanelOptions) {
  const { ctx, state, ws, mapEl } = o;
  let checkCursor = 0;
  /** A warning's "Show me": an ignored outline is shown as an object is (a few widths across, highlighted), an
   * empty training area is fitted whole. */
  const showTarget = (isFlag: boolean, target: Feature): void => (isFlag ? ws.focusFeature(target, "flagged") : ws.zoomTo(target));

  // ---- Guidance -------------------------------------------------------------------------------------------
  let guidanceFrame = 0;
  function scheduleGuidance(): void {
    if (guidanceFrame) return;
    guidanceFrame = requestAnimationFrame(() => {
      guidanceFrame = 0;
      renderGuidance();
    });
  }
  [ws.areaSource, ws.outlineSource].forEach((source) => source.on(["addfeature", "removefeature", "changefeature"], scheduleGuidance));

  function renderGuidance(): void {
    const areas = ws.areaSource.getFeatures();
    const outlines = ws.outlineSource.getFeatures();
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
      if (f.get("use") !== result.use[i]) f.set("use", result.use[i], true);
    });
    ws.outlineLayer.changed();
    mapEl.dataset.flagged = String(result.flagged.length);
    mapEl.dataset.clipped = String(result.clipped.length);
    mapEl.dataset.areas = String(areas.length);
    mapEl.dataset.outlines = String(outlines.length);
    clear(o.checklist);
    o.checklist.dataset.ready = String(result.ready);
    const first = result.steps.findIndex((s) => !s.done && !s.optional);
    result.steps.forEach((step, i) => {
      o.checklist.append(
        h(
          "div",
          { class: `step ${step.done ? "done" : ""} ${i === first ? "current" : ""} ${step.optional ? "optional" : ""}`, "data-step": step.id, "data-done": String(step.done) },
          h("span", { class: "step-mark" }, step.done ? icon("check", 14) : String(i + 1)),
          h("div", null, h("strong", null, step.title), i === first || (!step.done && step.optional && first === -1) ? h("p", null, step.hint) : null),
        ),
      );
    });
    for (const warning of result.warnings) {
      const isFlag = warning.id === "outside";
      const targets = isFlag ? warning.targets.map((i) => outlines[i]) : warning.targets.map((i) => training[i]);
      o.checklist.append(
        h(
          "div",
          { class: "warning", "data-testid": isFlag ? "warning-flagged" : "warning-empty" },
          icon("warn", 16),
          h("div", null, h("p", null, warning.text), targets.length ? h("button", { class: "link-btn", "data-testid": isFlag ? "show-flagged" : "show-empty", onclick: () => showTarget(isFlag, targets[checkCursor++ % targets.length]) }, "Show me") : null),
        ),
      );
    }
    for (const note of result.notes) o.checklist.append(h("div", { class: "tip", "data-testid": "note-clipped" }, h("p", null, note)));
    if (training.length && result.warnings.length === 0) {
      o.checklist.append(
        h(
          "div",
          { class: "tip" },
          h("p", null, "Missed objects are the most common mistake. Step through your training areas and look for anything without an outline."),
          h("button", { class: "link-btn", "data-testid": "check-areas", onclick: () => ws.zoomTo(training[checkCursor++ % training.length]) }, `Check training areas (${training.length})`),
        ),
      );
    }
    if (result.ready) o.checklist.append(h("p", { class: "all-set", "data-testid": "all-set" }, icon("check", 14), "All set: this is what training will need."));
    renderClasses();
  }

  // ---- Classes --------------------------------------------------------------------------------------------
  function chooseClass(id: string): void {
    state.activeClassId = id;
    const selected = o.selected().filter((f) => f.get("type") === "outline" && f.get("classId") !== id);
    if (selected.length) o.store.reclassify(selected, id);
    renderClasses();
    o.classChosen(id);
  }

  function renderClasses(): void {
    const { classesEl } = o;
    clear(classesEl);
    const counts = new Map<string, number>();
    for (const f of ws.outlineSource.getFeatures()) counts.set(f.get("classId"), (counts.get(f.get("classId")) ?? 0) + 1);
    state.classes.forEach((c, i) => {
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
            const near = reservedNear(updated.color);
            if (near) toast(`This colour is close to the one the map uses for ${near}: pick another to tell them apart.`, "info");
            ws.outlineLayer.changed();
            ws.detectionLayer.changed();
            renderClasses();
            o.classesChanged();
          } catch (e) {
            toast(errorMessage(e), "error");
          }
        },
      });
      const near = reservedNear(c.color);
      classesEl.append(
        h(
          "div",
          { class: `class-item ${c.id === state.activeClassId ? "active" : ""}`, "data-testid": "class-item", onclick: (e: Event) => (e.target as HTMLElement).tagName !== "INPUT" && chooseClass(c.id) },
          colorInput,
          h("span", { class: "class-name" }, c.name),
          near ? h("span", { class: "color-warn", "data-testid": "color-warn", title: `This colour is close to the one of ${near} on the map: click the swatch to choose another.` }, icon("warn", 13)) : null,
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
            if (!state.detector || !nameInput.value.trim()) return;
            try {
              const created = await ctx.api.post<DetectorClass>("detector-classes/", {
                detector: state.detector.id,
                name: nameInput.value.trim(),
                color: PALETTE[state.classes.length % PALETTE.length],
                position: state.classes.length,
              });
              state.classes.push(created);
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

  // ---- Images ---------------------------------------------------------------------------------------------
  /** A change detector's image: which project image is its second date (checked by the server in plain words:
   * one that does not overlap or has other bands is refused, and the choice goes back). */
  function secondDatePicker(link: DetectorImage): HTMLElement {
    const others = state.projectImages.filter((i) => i.id !== link.image && i.status !== "failed");
    const picker = h(
      "select",
      { "aria-label": "Second date", "data-testid": "second-date-select", "data-image-id": link.image },
      h("option", { value: "" }, "Choose the second date…"),
      ...others.map((i) => h("option", { value: i.id, selected: i.id === link.second_image }, i.status === "ready" ? i.name : `${i.name} (processing)`)),
    );
    picker.addEventListener("change", async () => {
      try {
        await ctx.api.patch(`detector-images/${link.id}/`, { second_image: picker.value || null });
        await o.loadAttachments();
        o.secondDateChanged();
      } catch (e) {
        toast(errorMessage(e), "error");
        picker.value = link.second_image ?? "";
      }
    });
    return h("label", { class: "second-date", "data-testid": "second-date" }, h("span", null, "Second date"), picker);
  }

  function renderImages(): void {
    const { imagesEl, attachEl } = o;
    clear(imagesEl);
    if (!state.attachments.length) imagesEl.append(h("p", { class: "muted small" }, "No image yet: add one below to start drawing."));
    for (const a of state.attachments) {
      const info = state.imageInfo.get(a.image);
      if (!info) continue;
      imagesEl.append(
        h(
          "button",
          { class: `ws-image ${state.current?.id === info.id ? "active" : ""}`, "data-testid": "ws-image", "data-image-id": info.id, onclick: () => o.openImage(info.id) },
          thumbnail(ctx.api, info, 40),
          h("span", { class: "ws-image-name" }, info.name, info.status !== "ready" ? imageStatusBadge(info.status) : null),
        ),
      );
      if (state.detector?.kind === "change") imagesEl.append(secondDatePicker(a));
    }
    clear(attachEl);
    const attached = new Set(state.attachments.map((a) => a.image));
    const candidates = state.projectImages.filter((i) => !attached.has(i.id) && i.status !== "failed");
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
            if (!state.detector) return;
            try {
              await ctx.api.post("detector-images/", { detector: state.detector.id, image: picker.value });
              await o.loadAttachments();
              o.openImage(picker.value);
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

  // ---- Layers ---------------------------------------------------------------------------------------------
  function renderLayers(): void {
    const { layersEl } = o;
    clear(layersEl);
    const row = (label: string, color: string | null, checked: boolean, onChange: (on: boolean) => void, testid: string, note?: string) => {
      const input = h("input", { type: "checkbox", checked, "data-testid": `layer-${testid}`, onchange: () => onChange(input.checked) });
      return h("label", { class: "layer-row" }, input, color ? h("span", { class: "swatch", style: { background: color } }) : h("span", { class: "swatch swatch-empty" }), h("span", null, label, note ? h("small", { class: "muted" }, ` ${note}`) : null));
    };
    const kindToggle = (kind: AreaKind, label: string) => row(label, AREA_COLORS[kind], ws.isKindVisible(kind), (on) => ws.setKindVisible(kind, on), kind);
    const firstColor = classColor(state, state.classes[0]?.id);
    layersEl.append(
      row("Image", null, ws.imageLayer.getVisible(), (on) => ws.imageLayer.setVisible(on), "image"),
      kindToggle("training", "Training areas"),
      kindToggle("testing", "Testing areas"),
      kindToggle("accuracy", "Accuracy areas"),
      row("Outlines", firstColor, ws.outlineLayer.getVisible(), (on) => ws.outlineLayer.setVisible(on), "outlines"),
      row("Outlines outside areas", FLAG_COLOR, ws.flaggedVisible(), (on) => ws.setFlaggedVisible(on), "flagged"),
      row("Predictions", PREDICTION_COLOR, ws.predictionLayer.getVisible(), (on) => ws.predictionLayer.setVisible(on), "predictions", "(testing areas)"),
      row("Misses, false detections, unoutlined finds", REVIEW_COLORS.miss, ws.reviewLayer.getVisible(), (on) => ws.reviewLayer.setVisible(on), "review"),
      row("Suggested areas", SUGGESTION_COLOR, ws.suggestionLayer.getVisible(), (on) => ws.suggestionLayer.setVisible(on), "suggestions", "(where to label next)"),
      row("Detected objects", firstColor, ws.detectionLayer.getVisible(), (on) => ws.detectionLayer.setVisible(on), "detections"),
      opacityRow(ws.detectionLayer, "Detected objects' opacity", "detections-opacity"),
      row("Online basemap", null, ws.basemapVisible(), (on) => ws.setBasemap(on), "basemap", "(OpenStreetMap, needs internet)"),
    );
  }

  return { scheduleGuidance, renderGuidance, chooseClass, renderClasses, renderImages, renderLayers };
}
