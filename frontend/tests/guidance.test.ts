import { describe, expect, it } from "vitest";

import { rectangleFromCorners } from "../src/geometry";
import { guidance, outlineUse } from "../src/guidance";
import { focusExtent } from "../src/workspace/focus";

const square = (x: number, y: number, size: number) => rectangleFromCorners([x, y], [x + size, y + size]);
const empty = { training: [], testing: [], accuracy: [], outlines: [] };

describe("outlineUse: the server's edge rule", () => {
  const areas = [square(0, 0, 10)];
  it("an outline inside counts whole, one crossing the edge by its inside part, one outside not at all", () => {
    expect(outlineUse(square(1, 1, 2), areas)).toBe("inside");
    expect(outlineUse(square(8, 4, 4), areas)).toBe("clipped");
    expect(outlineUse(square(20, 20, 2), areas)).toBe("outside");
    expect(outlineUse(square(10, 4, 2), areas)).toBe("outside"); // only touching the edge: no area inside
  });
  it("an outline across two touching areas is inside", () => {
    expect(outlineUse(square(8, 2, 4), [...areas, square(10, 0, 10)])).toBe("inside");
  });
});

describe("guidance", () => {
  it("starts with drawing a training area; nothing is ready or set", () => {
    const g = guidance(empty);
    expect(g.steps.map((s) => s.done)).toEqual([false, false, false, false]);
    expect(g.ready).toBe(false);
    expect(g.warnings).toEqual([]);
  });

  it("is ready with outlines in every training area and every accuracy area", () => {
    const g = guidance({ ...empty, training: [square(0, 0, 10)], accuracy: [square(20, 0, 10)], outlines: [square(1, 1, 2), square(21, 1, 2)] });
    expect(g.ready).toBe(true);
    expect(g.steps.find((s) => s.id === "outlines")!.hint).toMatch(/^1 outline in 1 of 1 training area\./);
  });

  it("an accuracy area without outlines leaves its step open", () => {
    const g = guidance({ ...empty, training: [square(0, 0, 10)], accuracy: [square(20, 0, 10)], outlines: [square(1, 1, 2)] });
    const step = g.steps.find((s) => s.id === "accuracy-area")!;
    expect(step.done).toBe(false);
    expect(step.hint).toMatch(/^1 accuracy area has no outline yet/);
    expect(g.ready).toBe(false);
  });

  it("the outlines step counts outlines per training area, not the first outline anywhere", () => {
    const drawing = { ...empty, training: [square(0, 0, 10), square(20, 0, 10)], accuracy: [square(40, 0, 10)], outlines: [square(1, 1, 2), square(41, 1, 2)] };
    const g = guidance(drawing);
    expect(g.emptyTraining).toEqual([1]);
    expect(g.steps[1].done).toBe(false);
    expect(g.steps[1].hint).toMatch(/^1 outline in 1 of 2 training areas\./);
    expect(g.warnings.map((w) => w.id)).toEqual(["empty-training"]);
    expect(g.warnings[0].text).toMatch(/^1 training area has no outline yet/);
    expect(g.ready).toBe(false);
    const filled = guidance({ ...drawing, outlines: [...drawing.outlines, square(21, 1, 2)] });
    expect(filled.steps[1].done).toBe(true);
    expect(filled.warnings).toEqual([]);
    expect(filled.ready).toBe(true);
  });

  it("flags only outlines sharing no area with a training or accuracy area (testing areas do not count)", () => {
    const drawing = {
      ...empty,
      training: [square(0, 0, 10)],
      accuracy: [square(20, 0, 10)],
      testing: [square(50, 50, 10)],
      outlines: [square(1, 1, 2), square(51, 51, 2), square(9, 9, 3), square(21, 1, 2)],
    };
    const g = guidance(drawing);
    expect(g.use).toEqual(["inside", "outside", "clipped", "inside"]);
    expect(g.flagged).toEqual([1]);
    expect(g.clipped).toEqual([2]);
    expect(g.warnings[0].id).toBe("outside");
    expect(g.warnings[0].text).toMatch(/^1 outline lies wholly outside every training and accuracy area, so training and the score ignore it/);
    expect(g.notes[0]).toMatch(/^1 outline crosses an area’s edge\. Training learns only the part inside the training area/);
    expect(g.ready).toBe(false); // "All set" never beside an open warning
    const moved = guidance({ ...drawing, outlines: drawing.outlines.filter((_, i) => i !== 1) });
    expect(moved.warnings).toEqual([]);
    expect(moved.notes).toHaveLength(1); // a clipped outline is a fact, not a problem
    expect(moved.ready).toBe(true);
  });
});

describe("focusExtent", () => {
  it("shows the object a few of its widths across, centred", () => {
    expect(focusExtent([10, 10, 12, 11], [0, 0, 1000, 1000])).toEqual([7, 6.5, 15, 14.5]);
  });
  it("never zooms out past the image", () => {
    expect(focusExtent([10, 10, 30, 30], [0, 0, 40, 40])).toEqual([0, 0, 40, 40]);
  });
  it("keeps a least side for a tiny object, and the object always fits", () => {
    expect(focusExtent([0, 0, 1, 1], null, 4, 10)).toEqual([-4.5, -4.5, 5.5, 5.5]);
    expect(focusExtent([0, 0, 50, 50], [0, 0, 40, 40])).toEqual([0, 0, 50, 50]);
  });
});
