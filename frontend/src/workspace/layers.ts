// Controls of the Layers panel that are more than a checkbox: a layer's opacity (detected objects can cover the
// whole image, so the user sets how much of the imagery shows through).

import type BaseLayer from "ol/layer/Base";

import { h } from "../dom";

/** A slider from 10% to 100% that sets `layer`'s opacity as it moves. */
export function opacityRow(layer: BaseLayer, label: string, testid: string): HTMLElement {
  const value = h("output", { class: "opacity-value" }, `${Math.round(layer.getOpacity() * 100)}%`);
  const input = h("input", {
    type: "range",
    min: "0.1",
    max: "1",
    step: "0.05",
    value: String(layer.getOpacity()),
    "aria-label": label,
    "data-testid": testid,
    oninput: () => {
      layer.setOpacity(Number(input.value));
      value.textContent = `${Math.round(Number(input.value) * 100)}%`;
    },
  });
  return h("label", { class: "layer-row opacity-row" }, h("span", { class: "swatch swatch-empty" }), h("span", null, "Opacity"), input, value);
}
