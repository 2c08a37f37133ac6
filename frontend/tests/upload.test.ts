import { describe, expect, it } from "vitest";

import { Api, ApiError } from "../src/api";
import { acceptedFileName, ACCEPTED_EXTENSIONS, formatBytes, NOT_AN_IMAGE, Upload } from "../src/upload";

function fakeApi(calls: string[]): Api {
  let n = 0;
  const api = new Api({ csrfToken: () => null });
  api.request = (async (method: string, path: string) => {
    calls.push(`${method} ${path}`);
    const image = { id: "img", status: path.includes("commit") ? "uploaded" : "uploading" };
    return path.includes("commit") ? image : { image, upload_url: `http://blob/${++n}`, expires_at: "" };
  }) as Api["request"];
  return api;
}

describe("Upload", () => {
  it("starts, sends with progress, commits", async () => {
    const calls: string[] = [];
    const progress: number[] = [];
    const file = new File([new Uint8Array(1000)], "ortho.tif");
    const upload = new Upload(fakeApi(calls), "p1", file, async (_url, body, onProgress) => {
      onProgress(500, body.size);
      onProgress(1000, body.size);
    });
    upload.onChange((s) => progress.push(s.loaded));
    await upload.run();
    expect(upload.state.phase).toBe("done");
    expect(calls).toEqual(["POST images/uploads/", "POST images/img/commit/"]);
    expect(progress).toContain(500);
    expect(upload.state.image?.status).toBe("uploaded");
  });

  it("keeps the image after a failed transfer and retries with a renewed URL", async () => {
    const calls: string[] = [];
    const urls: string[] = [];
    let attempts = 0;
    const upload = new Upload(fakeApi(calls), "p1", new File(["x"], "a.tif"), async (url) => {
      urls.push(url);
      if (attempts++ === 0) throw new ApiError(0, "The upload was interrupted. Check your connection and retry.");
    });
    await upload.run();
    expect(upload.state.phase).toBe("failed");
    expect(upload.state.error).toMatch(/interrupted/);
    await upload.run();
    expect(upload.state.phase).toBe("done");
    expect(calls).toEqual(["POST images/uploads/", "POST images/img/upload-url/", "POST images/img/commit/"]);
    expect(urls).toEqual(["http://blob/1", "http://blob/2"]);
  });

  it("refuses a file that is not an image by its name, plainly, without sending it", async () => {
    const calls: string[] = [];
    const upload = new Upload(fakeApi(calls), "p1", new File(["hello"], "notes.txt"), async () => {
      throw new Error("nothing should be sent");
    });
    await upload.run();
    expect(upload.state.phase).toBe("failed");
    expect(upload.state.error).toBe("This file is not an image we can read (accepted: GeoTIFF, JPEG 2000, PNG, JPEG)");
    expect(upload.state.error).toBe(NOT_AN_IMAGE);
    expect(upload.state.retryable).toBe(false);
    expect(calls).toEqual([]);
  });

  it("lets the picker offer image extensions only", () => {
    expect(ACCEPTED_EXTENSIONS.join(",")).toBe(".tif,.tiff,.jp2,.j2k,.png,.jpg,.jpeg");
    for (const name of ["ortho.tif", "ORTHO.TIFF", "a.b.jp2", "x.j2k", "p.png", "p.JPG", "p.jpeg"]) expect(acceptedFileName(name)).toBe(true);
    for (const name of ["notes.txt", "tif", ".tif", "ortho.tif.txt", "mosaic.vrt", "scene.gif", "noext"]) expect(acceptedFileName(name)).toBe(false);
  });

  it("formats sizes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(3 * 1024 * 1024)).toBe("3.0 MB");
    expect(formatBytes(250 * 1024 ** 3)).toBe("250 GB");
  });
});
