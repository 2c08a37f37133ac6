// Where "Show me" takes the view: the object at a useful scale, a few of its widths across, never farther out
// than the whole image. Plain arithmetic on extents (map units), so it is unit-tested.

export type Extent = [number, number, number, number];

/** Object widths the view spans across its shorter side when it shows an object. */
export const FOCUS_WIDTHS = 4;

/**
 * The square extent centred on `object` that is `widths` times its larger side, at least `minSide` map units
 * (a tiny object still shows some context), and no larger than the image's larger side (the view never zooms
 * out past the image to show one object).
 */
export function focusExtent(object: Extent, image: Extent | null, widths = FOCUS_WIDTHS, minSide = 0): Extent {
  const [x0, y0, x1, y1] = object;
  const size = Math.max(x1 - x0, y1 - y0);
  let side = Math.max(widths * size, minSide);
  if (image) side = Math.min(side, Math.max(image[2] - image[0], image[3] - image[1]));
  side = Math.max(side, size); // the object itself always fits
  const [cx, cy] = [(x0 + x1) / 2, (y0 + y1) / 2];
  return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2];
}
