import { describe, expect, it } from "vitest";

import {
  circleToPolygon,
  closeRing,
  isDrawable,
  pointInRing,
  rectangleFromCorners,
  ringCoveredBy,
  ringInsideRing,
  ringsIntersect,
  ringsOverlap,
  signedArea,
} from "../src/geometry";
import { lonLatToPixel, thumbnailZoom } from "../src/thumbs";

const square = (x: number, y: number, size: number) => rectangleFromCorners([x, y], [x + size, y + size]);

describe("circleToPolygon", () => {
  it("makes a closed ring whose vertices lie on the circle", () => {
    const ring = circleToPolygon([100, 50], 10, 32);
    expect(ring).toHaveLength(33);
    expect(ring[0]).toEqual(ring[32]);
    for (const [x, y] of ring) expect(Math.hypot(x - 100, y - 50)).toBeCloseTo(10, 9);
    expect(ring[0]).toEqual([110, 50]);
  });

  it("has about the circle's area, counter-clockwise", () => {
    const area = signedArea(circleToPolygon([0, 0], 5, 64));
    expect(area).toBeGreaterThan(0);
    expect(area).toBeCloseTo(Math.PI * 25, 0);
  });

  it("refuses a zero radius and keeps at least 8 sides", () => {
    expect(() => circleToPolygon([0, 0], 0)).toThrow();
    expect(circleToPolygon([0, 0], 1, 3)).toHaveLength(9);
  });
});

describe("inside tests", () => {
  const area = square(0, 0, 10);

  it("points inside, outside and on the boundary", () => {
    expect(pointInRing([5, 5], area)).toBe(true);
    expect(pointInRing([11, 5], area)).toBe(false);
    expect(pointInRing([10, 5], area)).toBe(true);
    expect(pointInRing([0, 0], area)).toBe(true);
  });

  it("outline inside an area, across two touching areas, and outside", () => {
    expect(ringInsideRing(square(2, 2, 3), area)).toBe(true);
    expect(ringInsideRing(square(8, 8, 4), area)).toBe(false);
    expect(ringCoveredBy(square(8, 2, 4), [area, square(10, 0, 10)])).toBe(true);
    expect(ringCoveredBy(square(30, 30, 1), [area])).toBe(false);
    expect(ringCoveredBy([], [area])).toBe(false);
  });

  it("concave areas: a notch is outside", () => {
    const l: [number, number][] = closeRing([[0, 0], [10, 0], [10, 4], [4, 4], [4, 10], [0, 10]]);
    expect(ringInsideRing(square(6, 6, 2), l)).toBe(false);
    expect(ringInsideRing(square(1, 6, 2), l)).toBe(true);
  });

  it("intersection of rings", () => {
    expect(ringsIntersect(square(0, 0, 10), square(5, 5, 10))).toBe(true);
    expect(ringsIntersect(square(0, 0, 10), square(20, 20, 1))).toBe(false);
    const cross1 = rectangleFromCorners([0, 4], [10, 6]);
    const cross2 = rectangleFromCorners([4, 0], [6, 10]);
    expect(ringsIntersect(cross1, cross2)).toBe(true);
  });

  it("degenerate shapes are not drawable", () => {
    expect(isDrawable(square(0, 0, 1))).toBe(true);
    expect(isDrawable([[0, 0], [1, 1], [2, 2], [0, 0]])).toBe(false);
    expect(isDrawable([[0, 0], [1, 0], [0, 0]])).toBe(false);
  });
});

describe("ringsOverlap", () => {
  it("is true only when the rings share area, as the server's intersection(...).area > 0", () => {
    expect(ringsOverlap(square(0, 0, 10), square(5, 5, 10))).toBe(true); // corners cross
    expect(ringsOverlap(square(0, 0, 10), square(2, 2, 2))).toBe(true); // wholly inside
    expect(ringsOverlap(square(2, 2, 2), square(0, 0, 10))).toBe(true);
    expect(ringsOverlap(square(0, 0, 10), square(0, 0, 10))).toBe(true); // the same ring
    expect(ringsOverlap(square(0, 0, 10), square(0, 0, 5))).toBe(true); // inside, sharing two edges
    expect(ringsOverlap(square(0, 0, 10), square(10, 0, 10))).toBe(false); // sharing only an edge
    expect(ringsOverlap(square(0, 0, 10), square(10, 10, 10))).toBe(false); // sharing only a corner
    expect(ringsOverlap(square(0, 0, 10), square(20, 20, 1))).toBe(false);
    expect(ringsOverlap(rectangleFromCorners([-5, 4], [15, 6]), square(0, 0, 10))).toBe(true); // a bar through it
  });
});

describe("thumbnail tiles", () => {
  it("projects lon/lat to Web-Mercator pixels", () => {
    expect(lonLatToPixel(0, 0, 0)).toEqual([128, 128]);
    const [x, y] = lonLatToPixel(-180, 85.05112878, 1);
    expect(x).toBeCloseTo(0, 6);
    expect(y).toBeCloseTo(0, 3);
  });

  it("picks a zoom at which the image spans about the thumbnail's size", () => {
    const bounds: [number, number, number, number] = [6.6, 46.5, 6.61, 46.51];
    const z = thumbnailZoom(bounds, 72, 0, 22);
    const [x0] = lonLatToPixel(bounds[0], 0, z);
    const [x1] = lonLatToPixel(bounds[2], 0, z);
    expect(x1 - x0).toBeLessThanOrEqual(72 * 1.5);
    expect(x1 - x0).toBeGreaterThan(72 * 1.5 / 2);
  });
});
