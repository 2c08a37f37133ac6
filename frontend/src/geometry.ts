// Plain planar geometry on coordinate arrays (map units), kept free of OpenLayers so it is unit-tested.

export type Coord = [number, number];
export type Ring = Coord[];

export function closeRing(ring: Ring): Ring {
  if (ring.length === 0) return ring;
  const [first, last] = [ring[0], ring[ring.length - 1]];
  return first[0] === last[0] && first[1] === last[1] ? ring : [...ring, [first[0], first[1]]];
}

/** A closed ring of `sides` vertices approximating a circle, counter-clockwise, starting east of the centre. */
export function circleToPolygon(center: Coord, radius: number, sides = 48): Ring {
  if (!(radius > 0)) throw new Error("A circle needs a radius greater than zero.");
  const n = Math.max(8, Math.round(sides));
  const ring: Ring = [];
  for (let i = 0; i < n; i++) {
    const angle = (2 * Math.PI * i) / n;
    ring.push([center[0] + radius * Math.cos(angle), center[1] + radius * Math.sin(angle)]);
  }
  return closeRing(ring);
}

export function rectangleFromCorners(a: Coord, b: Coord): Ring {
  const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
  const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
  return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]];
}

/** Signed area (shoelace): positive for counter-clockwise rings. */
export function signedArea(ring: Ring): number {
  let sum = 0;
  for (let i = 0; i < ring.length - 1; i++) sum += ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1];
  return sum / 2;
}

export function bbox(ring: Ring): [number, number, number, number] {
  let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of ring) {
    minX = Math.min(minX, x);
    minY = Math.min(minY, y);
    maxX = Math.max(maxX, x);
    maxY = Math.max(maxY, y);
  }
  return [minX, minY, maxX, maxY];
}

function onSegment(p: Coord, a: Coord, b: Coord, eps: number): boolean {
  const cross = (p[0] - a[0]) * (b[1] - a[1]) - (p[1] - a[1]) * (b[0] - a[0]);
  const length = Math.hypot(b[0] - a[0], b[1] - a[1]) || 1;
  if (Math.abs(cross) / length > eps) return false;
  return (
    Math.min(a[0], b[0]) - eps <= p[0] &&
    p[0] <= Math.max(a[0], b[0]) + eps &&
    Math.min(a[1], b[1]) - eps <= p[1] &&
    p[1] <= Math.max(a[1], b[1]) + eps
  );
}

/** Whether a point lies inside a closed ring or on its boundary (within `eps` map units). */
export function pointInRing(point: Coord, ring: Ring, eps = 1e-9): boolean {
  const closed = closeRing(ring);
  let inside = false;
  for (let i = 0, j = closed.length - 2; i < closed.length - 1; j = i++) {
    const [a, b] = [closed[i], closed[j]];
    if (onSegment(point, a, b, eps)) return true;
    if (a[1] > point[1] !== b[1] > point[1] && point[0] < ((b[0] - a[0]) * (point[1] - a[1])) / (b[1] - a[1]) + a[0]) {
      inside = !inside;
    }
  }
  return inside;
}

/** Whether every vertex of `inner` lies in `outer` (enough for outlines drawn inside areas). */
export function ringInsideRing(inner: Ring, outer: Ring, eps = 1e-9): boolean {
  return inner.length > 0 && inner.every((p) => pointInRing(p, outer, eps));
}

/**
 * Whether an outline is covered by the given areas: each vertex in at least one of them, so an outline that
 * straddles two touching areas still counts as inside.
 */
export function ringCoveredBy(inner: Ring, areas: Ring[], eps = 1e-9): boolean {
  return inner.length > 0 && inner.every((p) => areas.some((area) => pointInRing(p, area, eps)));
}

/** Whether two rings share any point (vertex containment or crossing edges). */
export function ringsIntersect(a: Ring, b: Ring): boolean {
  const [ax0, ay0, ax1, ay1] = bbox(a);
  const [bx0, by0, bx1, by1] = bbox(b);
  if (ax1 < bx0 || bx1 < ax0 || ay1 < by0 || by1 < ay0) return false;
  if (a.some((p) => pointInRing(p, b)) || b.some((p) => pointInRing(p, a))) return true;
  const cross = (o: Coord, p: Coord, q: Coord) => (p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0]);
  for (let i = 0; i < a.length - 1; i++) {
    for (let j = 0; j < b.length - 1; j++) {
      const [p1, p2, q1, q2] = [a[i], a[i + 1], b[j], b[j + 1]];
      const d1 = cross(q1, q2, p1);
      const d2 = cross(q1, q2, p2);
      const d3 = cross(p1, p2, q1);
      const d4 = cross(p1, p2, q2);
      if (d1 * d2 < 0 && d3 * d4 < 0) return true;
    }
  }
  return false;
}

/** Whether a point lies on a ring's boundary (within `eps` map units). */
export function pointOnRing(point: Coord, ring: Ring, eps = 1e-9): boolean {
  const closed = closeRing(ring);
  for (let i = 0; i < closed.length - 1; i++) if (onSegment(point, closed[i], closed[i + 1], eps)) return true;
  return false;
}

/** Whether a point lies strictly inside a ring: inside and farther than `eps` from its boundary. */
export function pointStrictlyInRing(point: Coord, ring: Ring, eps = 1e-9): boolean {
  return pointInRing(point, ring, 0) && !pointOnRing(point, ring, eps);
}

function centroid(ring: Ring): Coord | null {
  const closed = closeRing(ring);
  let [a, cx, cy] = [0, 0, 0];
  for (let i = 0; i < closed.length - 1; i++) {
    const [p, q] = [closed[i], closed[i + 1]];
    const f = p[0] * q[1] - q[0] * p[1];
    a += f;
    cx += (p[0] + q[0]) * f;
    cy += (p[1] + q[1]) * f;
  }
  return a ? [cx / (3 * a), cy / (3 * a)] : null;
}

/**
 * Whether two rings share some area (their interiors overlap), not merely a boundary: what the server's
 * `intersection(...).area > 0` asks. An edge crossing the other's edge properly, a vertex or an edge's midpoint
 * strictly inside the other, or (for rings drawn on each other's edges) a centroid strictly inside both.
 */
export function ringsOverlap(a: Ring, b: Ring, eps = 1e-9): boolean {
  const [ax0, ay0, ax1, ay1] = bbox(a);
  const [bx0, by0, bx1, by1] = bbox(b);
  if (ax1 <= bx0 || bx1 <= ax0 || ay1 <= by0 || by1 <= ay0) return false;
  const [ca, cb] = [closeRing(a), closeRing(b)];
  const cross = (o: Coord, p: Coord, q: Coord) => (p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0]);
  for (let i = 0; i < ca.length - 1; i++) {
    for (let j = 0; j < cb.length - 1; j++) {
      const [p1, p2, q1, q2] = [ca[i], ca[i + 1], cb[j], cb[j + 1]];
      if (cross(q1, q2, p1) * cross(q1, q2, p2) < 0 && cross(p1, p2, q1) * cross(p1, p2, q2) < 0) return true;
    }
  }
  const probes = (r: Ring): Coord[] => [...r.slice(0, -1), ...r.slice(0, -1).map((p, i): Coord => [(p[0] + r[i + 1][0]) / 2, (p[1] + r[i + 1][1]) / 2])];
  if (probes(ca).some((p) => pointStrictlyInRing(p, cb, eps)) || probes(cb).some((p) => pointStrictlyInRing(p, ca, eps))) return true;
  const c = centroid(ca);
  return c !== null && pointStrictlyInRing(c, ca, eps) && pointStrictlyInRing(c, cb, eps);
}

/** A ring with fewer than 3 distinct vertices or (almost) no area cannot be saved as a polygon. */
export function isDrawable(ring: Ring, minArea = 1e-6): boolean {
  const closed = closeRing(ring);
  const distinct = new Set(closed.slice(0, -1).map(([x, y]) => `${x},${y}`));
  return distinct.size >= 3 && Math.abs(signedArea(closed)) > minArea;
}
