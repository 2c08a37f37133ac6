// The kinds of area, as the app names and colours them (plain data: no OpenLayers, so the shape store uses it).

import type { AreaKind } from "./types";

export const AREA_COLORS: Record<AreaKind, string> = {
  training: "#2F9E44",
  testing: "#1C7ED6",
  accuracy: "#AE3EC9",
  detection: "#868E96",
};

export const AREA_LABELS: Record<AreaKind, string> = {
  training: "Training area",
  testing: "Testing area",
  accuracy: "Accuracy area",
  detection: "Detection area",
};
