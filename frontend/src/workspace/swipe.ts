// The swipe view of a change detector's two dates: the second date's layer is drawn only right of a vertical
// divider the user drags (or moves with the arrow keys), so both dates are on screen at once, in sync, and the
// first shows left of it. Only the picture is clipped: areas and outlines are drawn over both sides, so drawing
// works the same on either. The map element says where the divider is (data-swipe: 0 to 1 of its width).

import type OlMap from "ol/Map";
import { Control } from "ol/control";
import type TileLayer from "ol/layer/Tile";
import { getRenderPixel } from "ol/render";
import type RenderEvent from "ol/render/Event";

import { h } from "../dom";

export function createSwipe(map: OlMap, layer: TileLayer, mapEl: HTMLElement) {
  let fraction = 0.5;
  const before = h("span", { class: "swipe-label swipe-label-before", "data-testid": "swipe-before" });
  const after = h("span", { class: "swipe-label swipe-label-after", "data-testid": "swipe-after" });
  const handle = h(
    "div",
    {
      class: "swipe-handle",
      role: "slider",
      tabindex: "0",
      "aria-label": "Divider between the two dates",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "data-testid": "swipe-handle",
      title: "Drag to compare the two dates",
    },
    "⇔",
  );
  const bar = h("div", { class: "swipe-bar", "data-testid": "swipe-bar", hidden: true }, before, after, handle);
  const control = new Control({ element: bar });
  map.addControl(control);

  function place(value: number): void {
    fraction = Math.min(1, Math.max(0, value));
    bar.style.left = `${fraction * 100}%`;
    handle.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
    mapEl.dataset.swipe = fraction.toFixed(3);
    map.render();
  }

  // Dragged by the handle (pointer capture: the map under it neither pans nor draws meanwhile).
  handle.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
  });
  handle.addEventListener("pointermove", (event) => {
    if (!handle.hasPointerCapture(event.pointerId)) return;
    const box = mapEl.getBoundingClientRect();
    place((event.clientX - box.left) / box.width);
  });
  handle.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 0.2 : 0.05;
    if (event.key === "ArrowLeft") place(fraction - step);
    else if (event.key === "ArrowRight") place(fraction + step);
    else return;
    event.preventDefault();
    event.stopPropagation();
  });

  // The second date drawn right of the divider only.
  const clip = (event: RenderEvent) => {
    const ctx = event.context as CanvasRenderingContext2D;
    const size = map.getSize();
    if (!size) return;
    const x = size[0] * fraction;
    const corners = [[x, 0], [size[0], 0], size, [x, size[1]]].map((p) => getRenderPixel(event, p));
    ctx.save();
    ctx.beginPath();
    ctx.moveTo(corners[0][0], corners[0][1]);
    for (const [px, py] of corners.slice(1)) ctx.lineTo(px, py);
    ctx.closePath();
    ctx.clip();
  };
  const restore = (event: RenderEvent) => (event.context as CanvasRenderingContext2D).restore();
  layer.on("prerender", clip);
  layer.on("postrender", restore);
  place(fraction);

  return {
    /** Show the divider with the two dates' names (left, right), or hide it (null). */
    show(labels: [string, string] | null): void {
      bar.hidden = labels === null;
      before.textContent = labels ? labels[0] : "";
      after.textContent = labels ? labels[1] : "";
      place(fraction);
    },
    /** Put the divider at `value` of the map's width (0: all second date, 1: all first). */
    place,
    dispose(): void {
      layer.un("prerender", clip);
      layer.un("postrender", restore);
      map.removeControl(control);
    },
  };
}
