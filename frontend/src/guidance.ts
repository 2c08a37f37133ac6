// What a first-time user should do next, from what is drawn on the current image. Plain words, no jargon.
// Every item is computed from the same facts the server goes by: the edge rule (`outlineUse`, the server's
// `workers/ml/datasets.py:outlines_in_areas`) and the outlines in each training and accuracy area.

import { type Ring, ringCoveredBy, ringsOverlap } from "./geometry";

export interface Drawing {
  training: Ring[];
  testing: Ring[];
  accuracy: Ring[];
  outlines: Ring[];
}

export interface Step {
  id: "training-area" | "outlines" | "accuracy-area" | "testing-area";
  title: string;
  hint: string;
  done: boolean;
  optional?: boolean;
}

/** Something open that stops "All set": `targets` index `outlines` (outside) or `training` (empty-training). */
export interface Warning {
  id: "outside" | "empty-training";
  text: string;
  targets: number[];
}

/** How training and scoring use an outline: wholly inside the areas, clipped to them, or ignored. */
export type OutlineUse = "inside" | "clipped" | "outside";

export interface Guidance {
  steps: Step[];
  warnings: Warning[];
  /** Facts that need no action, said so the map is never misread (outlines crossing an area's edge). */
  notes: string[];
  /** Per outline, how it is used. */
  use: OutlineUse[];
  /** Indexes (into `outlines`) of outlines sharing no area with any training or accuracy area: ignored. */
  flagged: number[];
  /** Indexes (into `outlines`) of outlines crossing the edge of the training and accuracy areas. */
  clipped: number[];
  /** Indexes (into `training`) of training areas no outline shares area with. */
  emptyTraining: number[];
  /** The required steps are done and nothing is open. */
  ready: boolean;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * The edge rule, as the server applies it: an outline sharing area with the given areas counts by its part
 * inside them (`clipped` when part of it lies outside: training treats that part as unknown, neither object
 * nor background); one sharing none (wholly outside, or only touching an edge) is ignored (`outside`).
 */
export function outlineUse(outline: Ring, areas: Ring[]): OutlineUse {
  if (!areas.some((area) => ringsOverlap(outline, area))) return "outside";
  return ringCoveredBy(outline, areas, 1e-6) ? "inside" : "clipped";
}

export function guidance(drawing: Drawing): Guidance {
  const areas = [...drawing.training, ...drawing.accuracy];
  const use = drawing.outlines.map((o) => outlineUse(o, areas));
  const flagged = use.flatMap((u, i) => (u === "outside" ? [i] : []));
  const clipped = use.flatMap((u, i) => (u === "clipped" ? [i] : []));
  const outlinesIn = (area: Ring) => drawing.outlines.filter((o) => ringsOverlap(o, area)).length;
  const perTraining = drawing.training.map(outlinesIn);
  const perAccuracy = drawing.accuracy.map(outlinesIn);
  const emptyTraining = perTraining.flatMap((n, i) => (n === 0 ? [i] : []));
  const learned = drawing.outlines.filter((o) => drawing.training.some((a) => ringsOverlap(o, a))).length;
  const trainingWithOutlines = perTraining.length - emptyTraining.length;
  const emptyAccuracy = perAccuracy.filter((n) => n === 0).length;

  const outlinesDone = drawing.training.length > 0 && emptyTraining.length === 0;
  const steps: Step[] = [
    {
      id: "training-area",
      title: drawing.training.length ? `${plural(drawing.training.length, "training area")} drawn` : "Draw a training area",
      hint: "Pick a part of the image that shows a few of the objects you want to find, and draw a rectangle around it (T).",
      done: drawing.training.length > 0,
    },
    {
      id: "outlines",
      title: outlinesDone ? "Outlines in every training area" : "Outline every object inside your training areas",
      hint: !drawing.training.length
        ? "Then trace each object inside it with the polygon (P), rectangle (R), circle (C) or freehand (F) tool."
        : learned === 0
          ? "Trace each object inside the training area with the polygon (P), rectangle (R), circle (C) or freehand (F) tool."
          : `${plural(learned, "outline")} in ${trainingWithOutlines} of ${plural(drawing.training.length, "training area")}. Outline every object in them, even small or partly hidden ones: anything left out is learned as “not an object”.`,
      done: outlinesDone,
    },
    {
      id: "accuracy-area",
      title: "Add an accuracy area and outline its objects to get a score",
      hint: !drawing.accuracy.length
        ? "Draw it somewhere else on the image (A) and outline the objects inside it too: the score compares what the detector finds there with your outlines."
        : `${plural(emptyAccuracy, "accuracy area")} ${emptyAccuracy === 1 ? "has" : "have"} no outline yet: outline the objects inside ${emptyAccuracy === 1 ? "it" : "them"}, the score compares what the detector finds there with your outlines.`,
      done: drawing.accuracy.length > 0 && emptyAccuracy === 0,
    },
    {
      id: "testing-area",
      title: "Optional: add a testing area",
      hint: "After training you will see what the detector finds inside testing areas (E). No outlines needed there.",
      done: drawing.testing.length > 0,
      optional: true,
    },
  ];

  const warnings: Warning[] = [];
  if (flagged.length) {
    const one = flagged.length === 1;
    warnings.push({
      id: "outside",
      text: `${plural(flagged.length, "outline")} ${one ? "lies" : "lie"} wholly outside every training and accuracy area, so training and the score ignore ${one ? "it" : "them"} (grey, dashed). Move ${one ? "it" : "them"} or draw an area around ${one ? "it" : "them"}.`,
      targets: flagged,
    });
  }
  if (emptyTraining.length && learned > 0) {
    const one = emptyTraining.length === 1;
    warnings.push({
      id: "empty-training",
      text: `${plural(emptyTraining.length, "training area")} ${one ? "has" : "have"} no outline yet: everything in ${one ? "it" : "them"} is learned as “not an object”. Outline its objects, or delete ${one ? "it" : "them"} if there is nothing to find there.`,
      targets: emptyTraining,
    });
  }
  const notes: string[] = [];
  if (clipped.length) {
    const one = clipped.length === 1;
    notes.push(
      `${plural(clipped.length, "outline")} ${one ? "crosses" : "cross"} an area’s edge. Training learns only the part inside the training area; what lies outside every area is neither object nor background to it. In an accuracy area, an object counts for the score when its middle lies inside.`,
    );
  }
  const ready = steps.filter((s) => !s.optional).every((s) => s.done) && warnings.length === 0;
  return { steps, warnings, notes, use, flagged, clipped, emptyTraining, ready };
}
