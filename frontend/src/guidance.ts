// What a first-time user should do next, from what is drawn on the current image. Plain words, no jargon.

import { type Ring, ringCoveredBy, ringsIntersect } from "./geometry";

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

export interface Guidance {
  steps: Step[];
  warnings: string[];
  /** Indexes (into `outlines`) of outlines outside every training and accuracy area. */
  flagged: number[];
  /** Indexes (into `training`) of training areas with no outline touching them. */
  emptyTraining: number[];
  ready: boolean;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Indexes of outlines not covered by any training or accuracy area. */
export function flaggedOutlines(drawing: Drawing): number[] {
  const areas = [...drawing.training, ...drawing.accuracy];
  return drawing.outlines.flatMap((outline, i) => (ringCoveredBy(outline, areas, 1e-6) ? [] : [i]));
}

export function guidance(drawing: Drawing): Guidance {
  const flagged = flaggedOutlines(drawing);
  const flaggedSet = new Set(flagged);
  const kept = drawing.outlines.filter((_, i) => !flaggedSet.has(i));
  const inTraining = kept.filter((o) => ringCoveredBy(o, drawing.training, 1e-6));
  const emptyTraining = drawing.training.flatMap((area, i) => (kept.some((o) => ringsIntersect(o, area)) ? [] : [i]));

  const steps: Step[] = [
    {
      id: "training-area",
      title: "Draw a training area",
      hint: "Pick a part of the image that shows a few of the objects you want to find, and draw a rectangle around it (T).",
      done: drawing.training.length > 0,
    },
    {
      id: "outlines",
      title: "Outline every object inside it",
      hint:
        inTraining.length > 0
          ? `${plural(inTraining.length, "outline")} so far. Outline every object in the training areas, even small or partly hidden ones: anything left out is learned as “not an object”.`
          : "Trace each object inside the training area with the polygon (P), rectangle (R), circle (C) or freehand (F) tool.",
      done: drawing.training.length > 0 && inTraining.length > 0 && emptyTraining.length === 0,
    },
    {
      id: "accuracy-area",
      title: "Add an accuracy area to get a score",
      hint: "Draw it somewhere else on the image (A) and outline the objects inside it too: the score compares what the detector finds there with your outlines.",
      done: drawing.accuracy.length > 0,
    },
    {
      id: "testing-area",
      title: "Optional: add a testing area",
      hint: "After training you will see what the detector finds inside testing areas (E). No outlines needed there.",
      done: drawing.testing.length > 0,
      optional: true,
    },
  ];

  const warnings: string[] = [];
  if (flagged.length) {
    warnings.push(
      `${plural(flagged.length, "outline")} ${flagged.length === 1 ? "lies" : "lie"} outside every training and accuracy area and will be ignored (shown in red). Move ${flagged.length === 1 ? "it" : "them"} or draw an area around ${flagged.length === 1 ? "it" : "them"}.`,
    );
  }
  if (emptyTraining.length && kept.length) {
    warnings.push(
      `${plural(emptyTraining.length, "training area")} ${emptyTraining.length === 1 ? "has" : "have"} no outline yet. That is fine only if there is really nothing to find there.`,
    );
  }
  const ready = steps.filter((s) => !s.optional).every((s) => s.done);
  return { steps, warnings, flagged, emptyTraining, ready };
}
