// The detector workspace: a full-window map of one image with the detector's areas and outlines, drawing and
// editing tools saved to the server as the user draws, undo/redo, a guidance checklist and layer toggles.
// The Train panel (`views/training.ts`) sits at the top of the side panel; what a trained version found in
// the testing areas, and where it erred in the accuracy areas, are drawn over the image.
//
// This file puts the parts together (src/workspace/): the map and its layers (map.ts), the shapes and their
// saving, undo and catch-up (store.ts), the drawing tools and shortcuts (tools.ts) and the side panels
// (panels.ts); it loads the detector and opens images.

import Feature from "ol/Feature";
import type Polygon from "ol/geom/Polygon";

import { ApiError } from "../api";
import type { AppContext } from "../app";
import { BASE } from "../app";
import { clear, errorMessage, h, icon, toast } from "../dom";
import type { Detector, DetectorImage, ImageInfo, Project, TileJson } from "../types";
import { createInfo } from "../workspace/info";
import { createLegend } from "../workspace/legend";
import { createWorkspaceMap, geojson, shapeLayers } from "../workspace/map";
import { createPanels } from "../workspace/panels";
import { classColor, type WorkspaceState } from "../workspace/state";
import { type SaveState, ShapeStore } from "../workspace/store";
import { createTools } from "../workspace/tools";
import { detectionPanel } from "./detection";
import { trainingPanel } from "./training";

export function workspaceView(root: HTMLElement, ctx: AppContext, params: Record<string, string>): () => void {
  const detectorId = params.id;
  let alive = true;
  const disposers: Array<() => void> = [];
  const state: WorkspaceState = {
    detector: null,
    classes: [],
    activeClassId: null,
    attachments: [],
    imageInfo: new Map<string, ImageInfo>(),
    projectImages: [],
    current: null,
  };
  let project: Project | null = null;
  const colorOf = (id: string | undefined) => classColor(state, id);

  // ---- DOM skeleton -------------------------------------------------------------------------------------
  const saveStatus = h("div", { class: "save-status", "data-testid": "save-status", "data-state": "saved", role: "status" }, icon("check", 14), h("span", null, "All changes saved"));
  const setSave = (saveState: SaveState, message: string) => {
    saveStatus.dataset.state = saveState;
    clear(saveStatus);
    saveStatus.append(saveState === "saving" ? h("span", { class: "spinner" }) : icon(saveState === "error" ? "warn" : "check", 14), h("span", null, message));
    if (saveState === "saved") drawingSaved();
  };
  // What the drawing now is has reached the server: the Train panel asks again whether what it said still holds.
  let drawingSaved = () => {};

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
  const helpButton = h("button", { class: "help-fab", title: "Keyboard shortcuts (?)", "aria-label": "Keyboard shortcuts", onclick: () => tools.toggleHelp() }, icon("help", 20));
  const mapWrap = h("div", { class: "map-wrap" }, mapEl, toolbar, hintEl, mapNotice, helpButton);
  root.append(h("div", { class: "workspace" }, side, mapWrap));

  // ---- The parts --------------------------------------------------------------------------------------------
  const ws = createWorkspaceMap({
    mapEl,
    classColor: colorOf,
    currentImageId: () => state.current?.id ?? null,
    apiBase: ctx.api.base,
    layerShown: () => panels.renderLayers(),
    coveredLeft: () => legend.element.offsetWidth,
  });
  disposers.push(ws.dispose);

  const store = new ShapeStore<Feature, Polygon>({
    api: ctx.api,
    layers: shapeLayers(ws, (feature) => tools.select.getFeatures().remove(feature)),
    where: () => (state.detector && state.current ? { detector: state.detector.id, image: state.current.id } : null),
    notify: (message, kind) => toast(message, kind),
    onSaveState: setSave,
  });

  const tools = createTools({
    ws,
    store,
    mapEl,
    hintEl,
    toolbar,
    classes: () => state.classes,
    activeClassId: () => state.activeClassId,
    chooseClass: (id) => panels.chooseClass(id),
    classColor: colorOf,
  });
  disposers.push(tools.dispose);

  const panels = createPanels({
    ctx,
    state,
    ws,
    store,
    mapEl,
    checklist,
    imagesEl,
    attachEl,
    classesEl,
    layersEl,
    selected: tools.selected,
    classChosen: (id) => tools.classChosen(id),
    classesChanged: () => {
      tools.renderToolbar();
      legend.update();
    },
    // The image already open is only brought back into view: opening it again would drop undo and the selection.
    openImage: (id) => (id === state.current?.id ? ws.fitToImage() : openImage(id)),
    loadAttachments: () => loadAttachments(),
    secondDateChanged: () => {
      showSecondDate();
      drawingSaved(); // the Train panel asks again: a missing second date was what training lacked
    },
  });

  // The legend of what the map shows, and what an object is (hover, or click with the Select tool).
  const legend = createLegend({ ws, classes: () => state.classes, classColor: colorOf });
  mapWrap.append(legend.element);
  disposers.push(legend.dispose);
  const objectInfo = createInfo({ ws, mapEl, classes: () => state.classes, active: () => mapEl.dataset.tool === "select" && !tools.drawing() });
  disposers.push(objectInfo.dispose);

  // ---- Catch-up with other tabs -----------------------------------------------------------------------------
  /** Back in this tab (focus, or the tab shown again): take what other tabs or people drew, changed or
   * deleted meanwhile. Skipped while an edit is being drawn or saved here; the next return tries again. */
  async function refreshShapes(): Promise<void> {
    const changes = await store.catchUp(() => alive && mapEl.dataset.ready === "true" && !tools.drawing());
    if (changes === null) return;
    mapEl.dataset.refreshed = String(Number(mapEl.dataset.refreshed ?? 0) + 1);
    if (changes) tools.hintFlash(`Updated with ${changes === 1 ? "1 change" : `${changes} changes`} made elsewhere`);
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

  // ---- Loading ---------------------------------------------------------------------------------------------
  async function loadAttachments(): Promise<void> {
    const detector = state.detector;
    if (!detector) return;
    const [links, images] = await Promise.all([
      ctx.api.list<DetectorImage>("detector-images/", { detector: detector.id }),
      detector.project ? ctx.api.list<ImageInfo>("images/", { project: detector.project }) : Promise.resolve([] as ImageInfo[]),
    ]);
    state.attachments = links;
    state.projectImages = images;
    for (const i of images) state.imageInfo.set(i.id, i);
    const missing = links.filter((l) => !state.imageInfo.has(l.image));
    await Promise.all(missing.map(async (l) => state.imageInfo.set(l.image, await ctx.api.get<ImageInfo>(`images/${l.image}/`))));
    panels.renderImages();
  }

  async function tileJson(image: ImageInfo): Promise<TileJson | null> {
    try {
      // Tiles with a 1-pixel gutter: the map smooths scaled tiles across their edges, with no seams.
      return await ctx.api.get<TileJson>(`images/${image.id}/tilejson.json`, { buffer: 1 });
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) toast(errorMessage(error), "error");
      return null;
    }
  }

  const notice = (text: string | null) => {
    mapNotice.hidden = text === null;
    if (text !== null) mapNotice.textContent = text;
  };

  /** Open `imageId` unless it is open already (a suggestion on another image); false when it is not one of the
   * detector's images. */
  async function showImageOf(imageId: string): Promise<boolean> {
    if (state.current?.id === imageId) return true;
    if (!state.attachments.some((a) => a.image === imageId)) return false;
    await openImage(imageId);
    return state.current?.id === imageId;
  }

  async function openImage(imageId: string): Promise<void> {
    const info = state.imageInfo.get(imageId) ?? (await ctx.api.get<ImageInfo>(`images/${imageId}/`));
    const detector = state.detector;
    if (!alive || !detector) return;
    state.current = info;
    objectInfo.close();
    ws.imageChanged();
    store.undo.clear();
    tools.select.getFeatures().clear();
    ws.clearImage();
    mapEl.dataset.ready = "false";
    const url = new URL(window.location.href);
    url.searchParams.set("image", imageId);
    history.replaceState(null, "", url.pathname + url.search);
    panels.renderImages();
    if (info.footprint) ws.showFootprint(info.footprint);
    ws.showImage(info, () => tileJson(info), notice, () => alive && state.current?.id === info.id);
    showSecondDate();
    try {
      const [areas, outlines] = await store.load(detector.id, imageId);
      if (!alive || state.current?.id !== imageId) return;
      ws.showShapes(areas, outlines, !info.footprint);
    } catch (error) {
      toast(errorMessage(error), "error");
    }
    panels.renderGuidance();
    mapEl.dataset.ready = "true";
    mapEl.dataset.imageId = imageId;
    mapEl.focus({ preventScroll: true });
  }

  /** A change detector's open image with its second date in the swipe view (nothing for one image). */
  function showSecondDate(): void {
    const info = state.current;
    const secondId = info && state.detector?.kind === "change" ? state.attachments.find((a) => a.image === info.id)?.second_image : null;
    const second = secondId ? (state.imageInfo.get(secondId) ?? null) : null;
    if (!info || !second) {
      ws.showSecondImage(null, async () => null, ["", ""], () => false);
      return;
    }
    const labels: [string, string] = [`First date: ${info.name}`, `Second date: ${second.name}`];
    ws.showSecondImage(second, () => tileJson(second), labels, () => alive && state.current?.id === info.id);
  }

  (async () => {
    try {
      const detector = await ctx.api.get<Detector>(`detectors/${detectorId}/`);
      if (!alive) return;
      state.detector = detector;
      state.classes = detector.classes.slice();
      state.activeClassId = state.classes[0]?.id ?? null;
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
      panels.renderLayers();
      panels.renderClasses();
      const panel = trainingPanel(ctx, detector, {
        showResults: ws.showResults,
        focusReview: ws.focusReview,
        showSuggestions: ws.showSuggestions,
        focusSuggestion: async (image, rank) => (await showImageOf(image)) && ws.focusSuggestion(rank),
        addSuggestedArea: async (image, rank, kind) => {
          if (!(await showImageOf(image))) return false;
          const geometry = ws.useSuggestion(rank);
          if (!geometry) return false;
          const area = new Feature(geojson.readGeometry(geometry) as Polygon);
          area.setProperties({ type: "area", kind });
          await store.add(area); // saved like a drawn area (undo included); a refusal removes it and says why
          return ws.areaSource.hasFeature(area);
        },
      });
      trainHost.replaceWith(panel.element);
      drawingSaved = panel.drawingSaved;
      disposers.push(() => panel.dispose());
      tools.setTool({ mode: "select" });
      await loadAttachments();
      const readyImages = () =>
        state.attachments.map((a) => state.imageInfo.get(a.image)).filter((i): i is ImageInfo => Boolean(i && i.status === "ready"));
      const secondImageOf = (id: string) => state.attachments.find((a) => a.image === id)?.second_image ?? null;
      const detect = detectionPanel(ctx, detector, { images: readyImages, currentImageId: () => state.current?.id ?? null, secondImageOf, showRun: ws.showDetection });
      detectHost.append(detect.element);
      disposers.push(() => detect.dispose());
      const wanted = new URL(window.location.href).searchParams.get("image");
      const { attachments, imageInfo } = state;
      const first = attachments.find((a) => a.image === wanted) ?? attachments.find((a) => imageInfo.get(a.image)?.status === "ready") ?? attachments[0];
      if (first) await openImage(first.image);
      else {
        notice("Add an image from the side panel to start drawing.");
        panels.renderGuidance();
        mapEl.dataset.ready = "true";
      }
      if (!localStorage.getItem("picterra.help-seen")) {
        localStorage.setItem("picterra.help-seen", "1");
        tools.hintFlash("New here? Press ? for the keyboard shortcuts.");
      }
    } catch (error) {
      titleEl.textContent = "Detector unavailable";
      toast(errorMessage(error), "error");
    }
  })();

  // Resize the map when the window or side panel changes size.
  const observer = new ResizeObserver(() => ws.map.updateSize());
  observer.observe(mapEl);
  disposers.push(() => observer.disconnect());

  return () => {
    alive = false;
    disposers.forEach((d) => d());
  };
}
