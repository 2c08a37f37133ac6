import { describe, expect, it, vi } from "vitest";

import { Api, ApiError, errorFromBody, firstMessage, readCookie } from "../src/api";

function jsonResponse(status: number, body: unknown, contentType = "application/json"): Response {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers: { "Content-Type": contentType } });
}

describe("error messages", () => {
  it("uses the server's detail", () => {
    const error = errorFromBody(400, { detail: "The shape lies outside the image.", errors: { geometry: ["x"] } });
    expect(error).toBeInstanceOf(ApiError);
    expect(error.message).toBe("The shape lies outside the image.");
    expect(error.status).toBe(400);
    expect(error.errors).toEqual({ geometry: ["x"] });
  });

  it("falls back to the first field error, naming the field", () => {
    expect(errorFromBody(400, { name: ["This field is required."] }).message).toBe("name: This field is required.");
    expect(firstMessage({ non_field_errors: ["Class names must be different."] })).toBe("Class names must be different.");
    expect(firstMessage([[], { color: ["Colour must look like #RRGGBB."] }])).toBe("color: Colour must look like #RRGGBB.");
    expect(firstMessage({})).toBeNull();
  });

  it("never shows an HTML page or a stack trace, only a plain message", () => {
    expect(errorFromBody(500, null).message).toBe("The server ran into a problem (error 500). Try again in a moment.");
    expect(errorFromBody(404, null).message).toMatch(/no longer exists/);
    expect(errorFromBody(418, null).message).toBe("The request failed (error 418).");
  });

  it("knows when the session is gone", () => {
    expect(new ApiError(403, "Authentication credentials were not provided.").needsSignIn).toBe(true);
    expect(new ApiError(403, "Only an owner of the organization can do this.").needsSignIn).toBe(false);
  });
});

describe("Api", () => {
  it("sends JSON with the CSRF token on unsafe methods only", async () => {
    const fetch = vi.fn(async () => jsonResponse(201, { id: "1" }));
    const api = new Api({ fetch: fetch as unknown as typeof globalThis.fetch, csrfToken: () => "tok" });
    await api.post("projects/", { name: "A" });
    await api.get("projects/", { organization: "o 1", search: undefined });
    const [postUrl, postInit] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(postUrl).toBe("/api/v1/projects/");
    expect((postInit.headers as Record<string, string>)["X-CSRFToken"]).toBe("tok");
    expect(postInit.body).toBe('{"name":"A"}');
    const [getUrl, getInit] = fetch.mock.calls[1] as unknown as [string, RequestInit];
    expect(getUrl).toBe("/api/v1/projects/?organization=o%201");
    expect((getInit.headers as Record<string, string>)["X-CSRFToken"]).toBeUndefined();
  });

  it("sends the version an edit was made from, and a refused stale edit is a 412 ApiError in plain words", async () => {
    const fetch = vi.fn(async () => jsonResponse(412, { detail: "This was changed elsewhere (another tab or another person) since you loaded it." }));
    const api = new Api({ fetch: fetch as unknown as typeof globalThis.fetch, csrfToken: () => "tok" });
    const edit = api.patch("areas/a1/", { kind: "testing" }, { "If-Match": '"2026-11-29T07:00:00.123456Z"' });
    await expect(edit).rejects.toMatchObject({ status: 412, message: expect.stringMatching(/changed elsewhere/) });
    const headers = (fetch.mock.calls[0] as unknown as [string, RequestInit])[1].headers as Record<string, string>;
    expect(headers["If-Match"]).toBe('"2026-11-29T07:00:00.123456Z"');
    expect(headers["X-CSRFToken"]).toBe("tok");
    expect(errorFromBody(412, null).message).toMatch(/changed elsewhere/);
  });

  it("turns error responses into ApiErrors with the detail, and HTML error pages into plain words", async () => {
    const responses = [
      jsonResponse(400, { detail: "The image belongs to another organization than the detector." }),
      jsonResponse(500, "<html><body>Traceback (most recent call last)…</body></html>", "text/html"),
    ];
    const api = new Api({ fetch: (async () => responses.shift()!) as typeof globalThis.fetch, csrfToken: () => null });
    await expect(api.post("detector-images/", {})).rejects.toThrow("The image belongs to another organization than the detector.");
    const error = (await api.get("projects/").catch((e: unknown) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(500);
    expect(error.message).not.toMatch(/Traceback|html/);
  });

  it("reports an unreachable server in plain words", async () => {
    const api = new Api({ fetch: (async () => { throw new TypeError("Failed to fetch"); }) as typeof globalThis.fetch });
    await expect(api.get("projects/")).rejects.toMatchObject({ status: 0, message: expect.stringMatching(/Could not reach the server/) });
  });

  it("asks for sign-in once the session is gone", async () => {
    const api = new Api({ fetch: (async () => jsonResponse(403, { detail: "Authentication credentials were not provided." })) as typeof globalThis.fetch });
    const onSignIn = vi.fn();
    api.onSignInNeeded = onSignIn;
    await expect(api.get("projects/")).rejects.toBeInstanceOf(ApiError);
    expect(onSignIn).toHaveBeenCalledOnce();
  });

  it("follows pagination to the end", async () => {
    const pages: Record<string, unknown> = {
      "/api/v1/areas/?detector=d": { count: 3, next: "http://x/api/v1/areas/?detector=d&page=2", previous: null, results: [1, 2] },
      "http://x/api/v1/areas/?detector=d&page=2": { count: 3, next: null, previous: null, results: [3] },
    };
    const api = new Api({ fetch: (async (url: string) => jsonResponse(200, pages[url])) as unknown as typeof globalThis.fetch });
    expect(await api.list<number>("areas/", { detector: "d" })).toEqual([1, 2, 3]);
  });

  it("reads the CSRF cookie", () => {
    expect(readCookie("a=1; csrftoken=abc%3D; b=2", "csrftoken")).toBe("abc=");
    expect(readCookie("a=1", "csrftoken")).toBeNull();
  });
});
