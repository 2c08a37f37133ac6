// Image thumbnails: a small mosaic of map tiles from the image's TileJSON, or its footprint drawn as a shape
// when tiles are not available (image not ready, or a server without tiles yet).

import type { Api } from "./api";
import { h } from "./dom";
import type { ImageInfo, Polygon, TileJson } from "./types";

const TILE = 256;

/** Web-Mercator world pixel coordinates of a lon/lat at zoom z (256-pixel tiles). */
export function lonLatToPixel(lon: number, lat: number, z: number, tileSize = TILE): [number, number] {
  const scale = tileSize * 2 ** z;
  const clamped = Math.max(-85.05112878, Math.min(85.05112878, lat));
  const sin = Math.sin((clamped * Math.PI) / 180);
  const x = ((lon + 180) / 360) * scale;
  const y = (0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI)) * scale;
  return [x, y];
}

export function polygonBounds(polygon: Polygon): [number, number, number, number] {
  const ring = polygon.coordinates[0];
  const xs = ring.map((p) => p[0]);
  const ys = ring.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

/** The zoom at which the bounds span roughly `box` pixels, within the TileJSON's zoom range. */
export function thumbnailZoom(bounds: [number, number, number, number], box: number, minzoom = 0, maxzoom = 22): number {
  for (let z = maxzoom; z >= minzoom; z--) {
    const [x0, y0] = lonLatToPixel(bounds[0], bounds[3], z);
    const [x1, y1] = lonLatToPixel(bounds[2], bounds[1], z);
    if (Math.max(x1 - x0, y1 - y0) <= box * 1.5) return z;
  }
  return minzoom;
}

function footprintSvg(footprint: Polygon | null, status: string): HTMLElement {
  const host = h("div", { class: `thumb thumb-shape thumb-${status}` });
  if (!footprint) {
    host.innerHTML = `<svg viewBox="0 0 20 20" width="34" height="34" fill="none" stroke="currentColor" stroke-width="1.4"><rect x="3" y="4" width="14" height="12" rx="1.5"/><path d="M3 13l4-4 4 4 2-2 4 4"/></svg>`;
    return host;
  }
  const points = footprint.coordinates[0].map(([lon, lat]) => lonLatToPixel(lon, lat, 20));
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, y0, w, hgt] = [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];
  const size = Math.max(w, hgt) || 1;
  const d = points.map(([x, y], i) => `${i ? "L" : "M"}${(((x - x0) / size) * 80 + 10 + (80 - (w / size) * 80) / 2).toFixed(1)} ${(((y - y0) / size) * 80 + 10 + (80 - (hgt / size) * 80) / 2).toFixed(1)}`);
  host.innerHTML = `<svg viewBox="0 0 100 100" width="100%" height="100%"><path d="${d.join("")}Z" fill="currentColor" fill-opacity=".18" stroke="currentColor" stroke-width="2"/></svg>`;
  return host;
}

export function tileMosaic(tiles: TileJson, footprint: Polygon, box: number): HTMLElement | null {
  const template = tiles.tiles?.[0];
  if (!template) return null;
  const bounds = tiles.bounds ?? polygonBounds(footprint);
  const z = thumbnailZoom(bounds, box, tiles.minzoom ?? 0, tiles.maxzoom ?? 22);
  const [x0, y0] = lonLatToPixel(bounds[0], bounds[3], z);
  const [x1, y1] = lonLatToPixel(bounds[2], bounds[1], z);
  const span = Math.max(x1 - x0, y1 - y0, 1);
  const scale = box / span;
  const [ox, oy] = [(box - (x1 - x0) * scale) / 2, (box - (y1 - y0) * scale) / 2];
  const host = h("div", { class: "thumb thumb-tiles" });
  let count = 0;
  for (let tx = Math.floor(x0 / TILE); tx <= Math.floor((x1 - 1e-9) / TILE) && count < 16; tx++) {
    for (let ty = Math.floor(y0 / TILE); ty <= Math.floor((y1 - 1e-9) / TILE) && count < 16; ty++, count++) {
      const url = template.replace("{z}", String(z)).replace("{x}", String(tx)).replace("{y}", String(ty));
      host.append(
        h("img", {
          src: url,
          alt: "",
          loading: "lazy",
          style: {
            left: `${ox + (tx * TILE - x0) * scale}px`,
            top: `${oy + (ty * TILE - y0) * scale}px`,
            width: `${TILE * scale + 0.5}px`,
            height: `${TILE * scale + 0.5}px`,
          },
        }),
      );
    }
  }
  return host;
}

export async function tileJsonFor(api: Api, imageId: string): Promise<TileJson | null> {
  try {
    return await api.get<TileJson>(`images/${imageId}/tilejson.json`);
  } catch {
    return null;
  }
}

export function thumbnail(api: Api, image: ImageInfo, box = 72): HTMLElement {
  const host = h("div", { class: "thumb-host", style: { width: `${box}px`, height: `${box}px` } });
  host.append(footprintSvg(image.footprint, image.status));
  if (image.status === "ready" && image.footprint) {
    tileJsonFor(api, image.id).then((tiles) => {
      const mosaic = tiles && image.footprint ? tileMosaic(tiles, image.footprint, box) : null;
      if (mosaic) host.replaceChildren(mosaic);
    });
  }
  return host;
}
