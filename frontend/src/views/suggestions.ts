// Where to label next, in the Train panel: the shown version's suggested squares, best first, each with its reason
// in plain words. Each can be shown on the map and turned into a training or an accuracy area in one click (the
// workspace adds it through its shape store, so it is saved like a drawn area and can be undone).

import { h, icon, toast } from "../dom";
import type { FeatureCollection } from "../types";

export type SuggestedKind = "training" | "accuracy";

export interface SuggestionHooks {
  /** Show the suggestion of `rank` on `image` (opening that image first); false when it is not there. */
  focusSuggestion(image: string, rank: number): Promise<boolean>;
  /** Turn the suggestion of `rank` on `image` into an area of `kind`; false when it could not be added. */
  addSuggestedArea(image: string, rank: number, kind: SuggestedKind): Promise<boolean>;
}

const ADDED: Record<SuggestedKind, string> = { training: "Added as a training area: outline every object in it.", accuracy: "Added as an accuracy area: outline every object in it." };

/** The card listing `suggestions` (null when there are none). */
export function suggestionsCard(suggestions: FeatureCollection, hooks: SuggestionHooks): HTMLElement | null {
  const features = [...suggestions.features].sort((a, b) => Number(a.properties.rank) - Number(b.properties.rank));
  if (!features.length) return null;
  const list = h("ol", { class: "suggestion-list" });
  for (const feature of features) {
    const rank = Number(feature.properties.rank);
    const image = String(feature.properties.image);
    const note = h("p", { class: "small muted", "data-testid": "suggestion-note" });
    const buttons: HTMLButtonElement[] = [];
    const add = async (kind: SuggestedKind) => {
      buttons.forEach((b) => (b.disabled = true));
      if (await hooks.addSuggestedArea(image, rank, kind)) {
        item.dataset.used = kind;
        note.textContent = ADDED[kind];
      } else buttons.forEach((b) => (b.disabled = false));
    };
    const show = async () => {
      if (!(await hooks.focusSuggestion(image, rank))) toast("This suggestion is not on the map any more.", "info");
    };
    buttons.push(
      h("button", { class: "btn btn-small", type: "button", "data-testid": "suggestion-show", title: "Show it on the map", onclick: show }, icon("zoom", 14), " Show"),
      h("button", { class: "btn btn-small", type: "button", "data-testid": "suggestion-training", title: "Make it a training area", onclick: () => add("training") }, icon("plus", 14), " Training area"),
      h("button", { class: "btn btn-small", type: "button", "data-testid": "suggestion-accuracy", title: "Make it an accuracy area", onclick: () => add("accuracy") }, icon("plus", 14), " Accuracy area"),
    );
    const item = h(
      "li",
      { class: "suggestion", "data-testid": "suggestion", "data-rank": String(rank), "data-image": image },
      h("span", { class: "suggestion-rank", "aria-hidden": "true" }, String(rank)),
      h("div", { class: "suggestion-body" }, h("p", { class: "small" }, String(feature.properties.reason ?? "")), h("div", { class: "check-actions" }, ...buttons), note),
    );
    list.append(item);
  }
  return h(
    "div",
    { class: "check-card suggestions-card", role: "status", "data-testid": "suggestions", "data-count": String(features.length) },
    h("p", null, h("strong", null, "Where to label next")),
    h("p", { class: "small" }, "The detector is least sure in these squares (magenta, numbered on the map). Add one as a training area and outline its objects, then train again; or make it an accuracy area to check the score there."),
    list,
  );
}
