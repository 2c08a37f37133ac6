// The product's name and mark, in one place: the header, page titles and (as a file the server serves,
// picterra/static/picterra/favicon.svg, checked equal by tests/brand.test.ts) the favicon.

export const PRODUCT_NAME = "Groundcount";

export const BRAND_MARK_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="24" height="24"><rect width="24" height="24" rx="6" fill="#1f6feb"/>' +
  '<path d="M6 17l4-9 4 6 2-3 3 6z" fill="#9ee6b0" opacity=".9"/>' +
  '<path d="M5 6.5h4M5 6.5v4" stroke="#fff" stroke-width="1.8" stroke-linecap="round"/>' +
  '<path d="M19 17.5h-4M19 17.5v-4" stroke="#fff" stroke-width="1.8" stroke-linecap="round"/></svg>';

/** The browser tab's title: the view's name, then the product's. */
export function pageTitle(title: string): string {
  return title ? `${title} · ${PRODUCT_NAME}` : PRODUCT_NAME;
}
