import { describe, expect, it } from "vitest";

import { AREA_COLORS } from "../src/areas";
import { CLASS_PALETTE, classPaletteColor, colorDistance, MIN_DISTANCE, PREDICTION_COLOR, RESERVED_COLORS, REVIEW_COLORS, reservedNear } from "../src/palette";

describe("the class palette", () => {
  it("keeps every class colour apart from every reserved colour", () => {
    for (const color of CLASS_PALETTE) {
      for (const [meaning, reserved] of Object.entries(RESERVED_COLORS)) {
        expect(colorDistance(color, reserved), `${color} against ${meaning} (${reserved})`).toBeGreaterThanOrEqual(MIN_DISTANCE);
      }
      expect(reservedNear(color)).toBeNull();
    }
  });

  it("keeps the classes apart from each other", () => {
    CLASS_PALETTE.forEach((a, i) =>
      CLASS_PALETTE.slice(i + 1).forEach((b) => expect(colorDistance(a, b), `${a} against ${b}`).toBeGreaterThanOrEqual(MIN_DISTANCE)),
    );
    expect(new Set(CLASS_PALETTE.map((c) => c.toUpperCase())).size).toBe(CLASS_PALETTE.length);
  });

  it("cycles for more classes than colours", () => {
    expect(classPaletteColor(0)).toBe(CLASS_PALETTE[0]);
    expect(classPaletteColor(CLASS_PALETTE.length + 1)).toBe(CLASS_PALETTE[1]);
  });
});

describe("reserved colours", () => {
  it("name what a colliding class colour would be mistaken for", () => {
    expect(reservedNear(AREA_COLORS.training)).toBe("training areas");
    expect(reservedNear("#AE3EC8")).toBe("accuracy areas"); // the old palette's purple: the accuracy areas' colour
    expect(reservedNear("#E8590C")).toBeNull(); // the old first class orange stays usable
  });

  it("tell the areas and the review states apart (the issue: four meanings in one orange, misses and flags in one red)", () => {
    const meanings = [...Object.values(AREA_COLORS).slice(0, 3), PREDICTION_COLOR, REVIEW_COLORS.match, REVIEW_COLORS.false_detection, REVIEW_COLORS.miss];
    meanings.forEach((a, i) => meanings.slice(i + 1).forEach((b) => expect(colorDistance(a, b), `${a} against ${b}`).toBeGreaterThanOrEqual(MIN_DISTANCE)));
  });

  it("measure distance symmetrically, zero for the same colour", () => {
    expect(colorDistance("#123456", "#123456")).toBe(0);
    expect(colorDistance("#000000", "#FFFFFF")).toBeCloseTo(100, 0);
    expect(colorDistance("#F76707", "#1C7ED6")).toBeCloseTo(colorDistance("#1C7ED6", "#F76707"), 9);
  });
});
