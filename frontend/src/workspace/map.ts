// The workspace's map and its layers: the image (XYZ tiles from its TileJSON), its footprint, the areas and
// outlines being drawn, what a trained version predicted and its review, a detection's objects (vector tiles),
// an optional online basemap. The map element's data attributes describe what it shows (for people debugging
// and for the browser tests): data-tiles-pending, data-second-image and data-swipe (a change detector's second
// date, shown right of the swipe divider: workspace/swipe.ts), data-predictions, data-review, data-suggestions, data-focused and data-highlight (what "Show me" points at), data-detection,
// data-detection-tiles, and the view (data-view-center, data-view-resolution, data-view-size).

import Feature from "ol/Feature";
import OlMap from "ol/Map";
import View from "ol/View";
import { Control, defaults as defaultControls, ScaleLine } from "ol/control";
import GeoJSON from "ol/format/GeoJSON";
import MVT from "ol/format/MVT";
import type Polygon from "ol/geom/Polygon";
import { defaults as defaultInteractions } from "ol/interaction";
import TileLayer from "ol/layer/Tile";
import VectorLayer from "ol/layer/Vector";
import VectorTileLayer from "ol/layer/VectorTile";
import { transformExtent } from "ol/proj";
import OSM from "ol/source/OSM";
import VectorSource from "ol/source/Vector";
import VectorTileSource from "ol/source/VectorTile";
import XYZ from "ol/source/XYZ";

import { h, icon } from "../dom";
import type { Ring } from "../geometry";
import { areaStyle, detectionStyle, footprintStyle, highlightStyles, outlineStyle, predictionStyle, type ReviewKind, reviewStyle, suggestionStyle } from "../styles";
import type { AreaKind, DetectionRun, FeatureCollection, ImageInfo, Polygon as GeoPolygon, TileJson } from "../types";
import { type Extent, FOCUS_WIDTHS, focusExtent } from "./focus";
import { createSwipe } from "./swipe";
import type { ShapeLayers, ShapeType } from "./store";

export const geojson = new GeoJSON({ dataProjection: "EPSG:4326", featureProjection: "EPSG:3857" });

export function toApiGeometry(feature: Feature): GeoPolygon {
  const geometry = feature.getGeometry() as Polygon;
  return geojson.writeGeometryObject(geometry, { decimals: 9 }) as unknown as GeoPolygon;
}

export function ringOf(feature: Feature): Ring {
  return ((feature.getGeometry() as Polygon).getCoordinates()[0] ?? []) as Ring;
}

export interface MapOptions {
  mapEl: HTMLElement;
  /** The colour of a class (outlines, detected objects). */
  classColor(id: string | undefined): string;
  /** The image open now. */
  currentImageId(): string | null;
  /** Where a detection run's vector tiles are served from (the API's base URL). */
  apiBase: string;
  /** A layer was turned on from here (not from the Layers panel). */
  layerShown(): void;
  /** Pixels on the map's left that something above it covers (the legend): fitting the image keeps clear of them. */
  coveredLeft?(): number;
}

export type WorkspaceMap = ReturnType<typeof createWorkspaceMap>;

export function createWorkspaceMap({ mapEl, classColor, currentImageId, apiBase, layerShown, coveredLeft }: MapOptions) {
  const imagePadding = () => [90, 60, 70, Math.max(60, (coveredLeft?.() ?? 0) + 24)];
  const visibleKinds = new Set<AreaKind>(["training", "testing", "accuracy", "detection"]);
  const footprintSource = new VectorSource();
  const areaSource = new VectorSource<Feature>();
  const outlineSource = new VectorSource<Feature>();

  const imageLayer = new TileLayer({ zIndex: 1 });
  // A change detector's second date, over the first and clipped to the right of the swipe divider: shapes are
  // drawn over both, on the first image's grid, so drawing works the same on either side.
  const secondImageLayer = new TileLayer({ zIndex: 1, visible: false });
  let basemapLayer: TileLayer | null = null;
  const footprintLayer = new VectorLayer({ source: footprintSource, style: footprintStyle, zIndex: 2 });
  const areaLayer = new VectorLayer({
    source: areaSource,
    zIndex: 3,
    style: (feature) => (visibleKinds.has(feature.get("kind")) ? areaStyle(feature.get("kind")) : undefined),
    updateWhileInteracting: true,
  });
  let showFlagged = true;
  const outlineLayer = new VectorLayer({
    source: outlineSource,
    zIndex: 4,
    style: (feature) => (!showFlagged && feature.get("flagged") ? undefined : outlineStyle(classColor(feature.get("classId")), Boolean(feature.get("flagged")))),
    updateWhileInteracting: true,
  });

  // What the shown trained version found (testing areas) and its review of the accuracy areas and the
  // training areas' unoutlined finds; each feature names its image, and only the open image's are drawn.
  const predictionSource = new VectorSource<Feature>();
  const reviewSource = new VectorSource<Feature>();
  const onOpenImage = (feature: { get(key: string): unknown }) => feature.get("image") === currentImageId();
  const predictionLayer = new VectorLayer({ source: predictionSource, zIndex: 5, style: (f) => (onOpenImage(f) ? predictionStyle() : undefined) });
  const reviewLayer = new VectorLayer({
    source: reviewSource,
    zIndex: 6,
    style: (f) => (onOpenImage(f) ? reviewStyle(f.get("kind") as ReviewKind) : undefined),
  });

  // Where to label next: the shown version's suggested squares (rank, reason, image); those already turned into an
  // area ("used") are no longer drawn.
  const suggestionSource = new VectorSource<Feature>();
  const suggestionLayer = new VectorLayer({
    source: suggestionSource,
    zIndex: 6,
    style: (f) => (onOpenImage(f) && !f.get("used") ? suggestionStyle(Number(f.get("rank"))) : undefined),
  });

  // A detection's objects as vector tiles: polygons up close, clustered points (sized by count) far out. The
  // classes drawn so far are kept for the legend (the layer's "classes" property changes when one is added).
  const detectionClasses = new Set<string>();
  const detectionLayer = new VectorTileLayer({
    zIndex: 7,
    declutter: false,
    style: (feature) => {
      const classId = feature.get("class_id") as string | undefined;
      if (classId && !detectionClasses.has(classId)) {
        detectionClasses.add(classId);
        detectionLayer.set("classes", detectionClasses.size);
      }
      return detectionStyle(classColor(classId), Number(feature.get("n") ?? 0));
    },
  });

  // The object "Show me" points at: a thick light halo under a dark line, over every other layer.
  const highlightSource = new VectorSource<Feature>();
  const highlightLayer = new VectorLayer({
    source: highlightSource,
    zIndex: 8,
    style: highlightStyles,
  });

  const map = new OlMap({
    target: mapEl,
    layers: [imageLayer, secondImageLayer, footprintLayer, areaLayer, outlineLayer, predictionLayer, reviewLayer, suggestionLayer, detectionLayer, highlightLayer],
    view: new View({ center: [0, 0], zoom: 2, maxZoom: 24, constrainResolution: false }),
    controls: defaultControls({ attribution: true, attributionOptions: { collapsible: true } }).extend([new ScaleLine({ bar: true, steps: 2, text: false, minWidth: 140, maxWidth: 220 }), fitControl()]),
    interactions: defaultInteractions({ altShiftDragRotate: false, pinchRotate: false, shiftDragZoom: false }),
  });
  // The view as data attributes (center and resolution in EPSG:3857, size in pixels; never rotated): where a map
  // coordinate is on screen follows from them.
  const describeView = () => {
    const view = map.getView();
    const center = view.getCenter();
    const resolution = view.getResolution();
    const size = map.getSize();
    if (center) mapEl.dataset.viewCenter = center.join(",");
    if (resolution) mapEl.dataset.viewResolution = String(resolution);
    if (size) mapEl.dataset.viewSize = size.join(",");
  };
  map.getView().on(["change:center", "change:resolution"], describeView);
  map.on("change:size", describeView);
  // data-view-moving: "true" from the first frame of a move or glide to its end, so a test reads a view at rest
  map.on("movestart", () => (mapEl.dataset.viewMoving = "true"));
  map.on("moveend", () => (mapEl.dataset.viewMoving = "false"));
  // data-rendering: "true" while a drawn frame still animates (tiles fading in, a glide), "false" once OpenLayers
  // says rendering is complete (everything loaded and faded in), so a test reads pixels of a finished picture
  map.on("postrender", (event) => {
    if (event.frameState?.animate) mapEl.dataset.rendering = "true";
  });
  map.on("rendercomplete", () => (mapEl.dataset.rendering = "false"));
  describeView();
  const swipe = createSwipe(map, secondImageLayer, mapEl);
  mapEl.dataset.secondImage = "";

  let detectionTiles = 0;
  function showDetection(run: DetectionRun | null): void {
    detectionClasses.clear();
    detectionLayer.set("classes", 0);
    if (!run || !run.objects_count) {
      detectionLayer.setSource(null);
      mapEl.dataset.detection = "";
      return;
    }
    // The API's own URL, trailing slash included: without it every tile cost a redirect first.
    const source = new VectorTileSource({ format: new MVT(), url: `${apiBase}detection-runs/${run.id}/tiles/{z}/{x}/{y}.pbf/?v=${run.status}-${run.cells_done}` });
    source.on("tileloadend", () => (mapEl.dataset.detectionTiles = String(++detectionTiles)));
    detectionLayer.setSource(source);
    mapEl.dataset.detection = run.id;
  }

  function countResults(): void {
    mapEl.dataset.predictions = String(predictionSource.getFeatures().filter(onOpenImage).length);
    mapEl.dataset.review = String(reviewSource.getFeatures().filter(onOpenImage).length);
    mapEl.dataset.suggestions = String(openSuggestions().length);
  }

  /** The suggestions drawn on the open image (not yet turned into an area). */
  const openSuggestions = () => suggestionSource.getFeatures().filter((f) => onOpenImage(f) && !f.get("used"));

  /** The shown version's suggestions of where to label next (null: none). */
  function showSuggestions(suggestions: FeatureCollection | null): void {
    suggestionSource.clear();
    if (suggestions) suggestionSource.addFeatures(geojson.readFeatures(suggestions) as Feature[]);
    countResults();
  }

  /** The suggestion of `rank` on the open image, or undefined. */
  const suggestionOf = (rank: number) => suggestionSource.getFeatures().find((f) => onOpenImage(f) && Number(f.get("rank")) === rank);

  /** Show the suggestion of `rank` (on the open image) with some ground around it; false when it is not there. */
  function focusSuggestion(rank: number): boolean {
    const feature = suggestionOf(rank);
    if (!feature) return false;
    if (!suggestionLayer.getVisible()) {
      suggestionLayer.setVisible(true);
      layerShown();
    }
    focusFeature(feature, `suggestion:${rank}`, 1.6);
    return true;
  }

  /** The suggestion of `rank` became an area: no longer drawn; its geometry (lon/lat GeoJSON) for the new area. */
  function useSuggestion(rank: number): GeoPolygon | null {
    const feature = suggestionOf(rank);
    if (!feature) return null;
    feature.set("used", true);
    highlightSource.clear();
    countResults();
    return toApiGeometry(feature);
  }

  function showResults(predictions: FeatureCollection | null, review: FeatureCollection | null): void {
    const read = (fc: FeatureCollection | null) => (fc ? (geojson.readFeatures(fc) as Feature[]) : []);
    predictionSource.clear();
    reviewSource.clear();
    highlightSource.clear();
    predictionSource.addFeatures(read(predictions));
    reviewSource.addFeatures(read(review));
    countResults();
  }

  /** Another image is open: only its predictions, review and suggestions are drawn. */
  function imageChanged(): void {
    highlightSource.clear();
    predictionLayer.changed();
    reviewLayer.changed();
    suggestionLayer.changed();
    countResults();
  }

  /** Show one object as "Show me" does: the view a few of its widths across (never past the image), the object
   * highlighted; `tag` goes to data-focused (what the browser tests read); `widths`: how many of its widths across. */
  function focusFeature(feature: Feature, tag: string, widths = FOCUS_WIDTHS): void {
    const extent = feature.getGeometry()!.getExtent() as Extent;
    const image = footprintSource.getFeatures().length ? (footprintSource.getExtent() as Extent) : null;
    map.getView().fit(focusExtent(extent, image, widths), { duration: 350 });
    highlightSource.clear();
    highlightSource.addFeature(new Feature(feature.getGeometry()!.clone()));
    mapEl.dataset.focused = tag;
    mapEl.dataset.highlight = extent.join(",");
  }

  /** Zoom to the `index`-th review feature of `kind` on the open image (``focusFeature``); returns how many
   * there are on this image. */
  function focusReview(kind: ReviewKind, index: number): number {
    const found = reviewSource.getFeatures().filter((f) => onOpenImage(f) && f.get("kind") === kind);
    if (!found.length) return 0;
    const feature = found[((index % found.length) + found.length) % found.length];
    if (!reviewLayer.getVisible()) {
      reviewLayer.setVisible(true);
      layerShown();
    }
    focusFeature(feature, `${kind}:${found.indexOf(feature)}`);
    return found.length;
  }

  /** Fit the view to an extent (a shape, an area) with room around it. */
  function fitExtent(extent: number[], padding = 90): void {
    map.getView().fit(extent, { padding: [padding, padding, padding, padding], duration: 300, maxZoom: 23 });
  }

  function zoomTo(feature: Feature): void {
    const extent = feature.getGeometry()!.getExtent();
    map.getView().fit(extent, { padding: [120, 120, 120, 120], duration: 350, maxZoom: map.getView().getZoom()! + 2 });
  }

  /** The image's picture from its TileJSON; a notice instead while it is not ready or has no tiles. `stillOpen`
   * says whether the image is still the open one once the TileJSON has come. */
  async function showImage(image: ImageInfo, tileJson: () => Promise<TileJson | null>, notice: (text: string | null) => void, stillOpen: () => boolean): Promise<void> {
    imageLayer.setSource(null);
    notice(null);
    if (image.status !== "ready") {
      notice(
        image.status === "failed"
          ? `This image could not be used: ${image.error || "unknown reason"}`
          : "This image is still being prepared. Its picture appears here when it is ready.",
      );
      return;
    }
    const tiles = await tileJson();
    if (!stillOpen()) return;
    if (!tiles?.tiles?.length) {
      notice("The image preview is not available on this server yet: its outline is shown instead. You can still draw.");
      return;
    }
    imageLayer.setSource(tileSource(tiles, imageLayer));
  }

  // Tiles still loading (both dates), for the loading indicator and for tests that wait for a settled map; a
  // source no longer shown stops counting.
  const pendingOf = new Map<TileLayer, number>();
  const showPending = () => (mapEl.dataset.tilesPending = String([...pendingOf.values()].reduce((a, b) => a + b, 0)));

  /** The tiles of a TileJSON as `layer`'s source (the layer limited to the image's bounds). */
  function tileSource(tiles: TileJson, layer: TileLayer): XYZ {
    const extent = tiles.bounds ? transformExtent(tiles.bounds, "EPSG:4326", "EPSG:3857") : undefined;
    layer.setExtent(extent);
    const source = new XYZ({
      urls: tiles.tiles,
      tileSize: tiles.tilesize ?? 256,
      // The server repeats this many pixels of the neighbouring tiles around each one: cropped here, they let
      // scaled tiles be smoothed across their edges (without them, a faint grid of seams at fractional zoom).
      gutter: tiles.buffer ?? 0,
      minZoom: tiles.minzoom ?? 0,
      maxZoom: tiles.maxzoom ?? 22,
      transition: 150,
    });
    pendingOf.set(layer, 0);
    showPending();
    const track = (delta: number) => () => {
      if (layer.getSource() !== source) return;
      pendingOf.set(layer, Math.max(0, (pendingOf.get(layer) ?? 0) + delta));
      showPending();
    };
    source.on("tileloadstart", track(1));
    source.on(["tileloadend", "tileloaderror"], track(-1));
    return source;
  }

  /** A change detector's second date of the open image, right of the swipe divider (null: none, no divider).
   * `labels` name the two sides. */
  async function showSecondImage(image: ImageInfo | null, tileJson: () => Promise<TileJson | null>, labels: [string, string], stillOpen: () => boolean): Promise<void> {
    secondImageLayer.setSource(null);
    secondImageLayer.setVisible(false);
    pendingOf.delete(secondImageLayer);
    showPending();
    mapEl.dataset.secondImage = "";
    swipe.show(image ? labels : null);
    if (!image || image.status !== "ready") return;
    const tiles = await tileJson();
    if (!stillOpen() || !tiles?.tiles?.length) return;
    secondImageLayer.setSource(tileSource(tiles, secondImageLayer));
    secondImageLayer.setVisible(true);
    mapEl.dataset.secondImage = image.id;
  }

  /** Take the shapes and footprint of the image that was open off the map. */
  function clearImage(): void {
    areaSource.clear();
    outlineSource.clear();
    footprintSource.clear();
  }

  /** Show the open image's footprint and fit the view to it. */
  function showFootprint(footprint: GeoPolygon): void {
    const feature = geojson.readFeature({ type: "Feature", geometry: footprint, properties: {} }) as Feature;
    footprintSource.addFeature(feature);
    map.getView().fit(feature.getGeometry()!.getExtent(), { padding: imagePadding() });
  }

  /** Bring the whole open image back into view (its footprint, else its shapes); only the view moves, so the
   * shapes, the selection and undo stay as they are. */
  function fitToImage(): void {
    const extent = footprintSource.getFeatures().length
      ? footprintSource.getExtent()
      : areaSource.getFeatures().length
        ? areaSource.getExtent()
        : outlineSource.getFeatures().length
          ? outlineSource.getExtent()
          : null;
    if (extent) map.getView().fit(extent, { padding: imagePadding(), duration: 250 });
  }

  function fitControl(): Control {
    const button = h("button", { type: "button", title: "Fit the image in view", "aria-label": "Fit the image in view", "data-testid": "fit-image", onclick: () => fitToImage() }, icon("fit", 18));
    return new Control({ element: h("div", { class: "ol-fit ol-unselectable ol-control" }, button) });
  }

  /** Show shapes loaded from the server; without a footprint, fit the view to them. */
  function showShapes(areas: Feature[], outlines: Feature[], fit: boolean): void {
    areaSource.addFeatures(areas);
    outlineSource.addFeatures(outlines);
    if (fit && (areas.length || outlines.length)) {
      const extent = (areaSource.getFeatures().length ? areaSource.getExtent() : outlineSource.getExtent())!;
      map.getView().fit(extent, { padding: imagePadding() });
    }
  }

  function setKindVisible(kind: AreaKind, on: boolean): void {
    if (on) visibleKinds.add(kind);
    else visibleKinds.delete(kind);
    areaLayer.changed();
  }

  function setFlaggedVisible(on: boolean): void {
    showFlagged = on;
    outlineLayer.changed();
  }

  function setBasemap(on: boolean): void {
    if (on && !basemapLayer) {
      basemapLayer = new TileLayer({ source: new OSM(), zIndex: 0 });
      map.addLayer(basemapLayer);
    }
    basemapLayer?.setVisible(on);
  }

  return {
    map,
    areaSource,
    outlineSource,
    predictionSource,
    reviewSource,
    suggestionSource,
    openSuggestions,
    detectionClasses,
    onOpenImage,
    imageLayer,
    areaLayer,
    outlineLayer,
    predictionLayer,
    reviewLayer,
    suggestionLayer,
    detectionLayer,
    visibleKinds,
    isKindVisible: (kind: AreaKind) => visibleKinds.has(kind),
    flaggedVisible: () => showFlagged,
    basemapVisible: () => Boolean(basemapLayer?.getVisible()),
    setKindVisible,
    setFlaggedVisible,
    setBasemap,
    showDetection,
    showResults,
    showSuggestions,
    focusSuggestion,
    useSuggestion,
    imageChanged,
    focusReview,
    focusFeature,
    zoomTo,
    showImage,
    showSecondImage,
    secondImageLayer,
    clearImage,
    showFootprint,
    fitToImage,
    fitExtent,
    showShapes,
    dispose: () => {
      swipe.dispose();
      map.setTarget(undefined);
    },
  };
}

/** The store's view of the map: areas and outlines are OpenLayers features in their two sources. */
export function shapeLayers(ws: WorkspaceMap, deselect: (feature: Feature) => void): ShapeLayers<Feature, Polygon> {
  const sourceOf = (feature: Feature) => (feature.get("type") === "area" ? ws.areaSource : ws.outlineSource);
  return {
    add: (feature) => {
      if (!sourceOf(feature).hasFeature(feature)) sourceOf(feature).addFeature(feature);
    },
    remove: (feature) => {
      deselect(feature);
      if (sourceOf(feature).hasFeature(feature)) sourceOf(feature).removeFeature(feature);
    },
    shapes: (type: ShapeType) => (type === "area" ? ws.areaSource : ws.outlineSource).getFeatures(),
    create: () => new Feature(),
    geometry: toApiGeometry,
    setGeometry: (feature, geometry) => feature.setGeometry(geojson.readGeometry(geometry) as Polygon),
    restore: (feature, geometry) => feature.setGeometry(geometry.clone()),
  };
}
