import { describe, expect, it } from "vitest";

import favicon from "../../picterra/static/picterra/favicon.svg?raw";
import { BRAND_MARK_SVG, PRODUCT_NAME, pageTitle } from "../src/brand";

describe("brand", () => {
  it("is called Groundcount in the tab title", () => {
    expect(PRODUCT_NAME).toBe("Groundcount");
    expect(pageTitle("")).toBe("Groundcount");
    expect(pageTitle("Vineyards")).toBe("Vineyards · Groundcount");
  });

  it("serves as favicon the mark the header draws", () => {
    expect(favicon.trim()).toBe(BRAND_MARK_SVG);
  });
});
