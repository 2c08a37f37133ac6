// One project: its images (upload with progress, processing status, retry) and its detectors.

import type { AppContext } from "../app";
import { BASE } from "../app";
import { clear, confirmDialog, errorMessage, h, icon, timeAgo, toast } from "../dom";
import { thumbnail } from "../thumbs";
import type { Detector, ImageInfo, Project } from "../types";
import { CLASS_PALETTE } from "../palette";
import { ACCEPTED_EXTENSIONS, formatBytes, Upload, type UploadState } from "../upload";

/** New classes' colours (palette.ts: never one of the map's reserved colours). */
export const PALETTE = CLASS_PALETTE;

const STATUS_TEXT: Record<string, string> = {
  uploading: "Waiting for the file",
  uploaded: "Queued for processing",
  ingesting: "Preparing for the map…",
  ready: "Ready",
  failed: "Could not be used",
};

const TRAINING_TEXT: Record<string, string> = {
  untrained: "Not trained yet",
  pending: "Training queued",
  running: "Training…",
  succeeded: "Trained",
  failed: "Last training failed",
  cancelled: "Last training cancelled",
};

/** A detector card's line: where training stands, the version Detect uses and its score. */
export function detectorFacts(detector: Detector): HTMLElement | null {
  const t = detector.training;
  if (!t) return null;
  const busy = t.status === "pending" || t.status === "running";
  return h(
    "div",
    { class: "detector-facts small", "data-testid": "detector-facts", "data-status": t.status },
    h("span", { class: `badge badge-training-${t.status}`, "data-testid": "detector-status" }, busy ? h("span", { class: "spinner" }) : null, TRAINING_TEXT[t.status] ?? t.status),
    t.version !== null ? h("span", { "data-testid": "detector-version" }, `Version ${t.version}`) : null,
    t.version !== null ? h("span", { "data-testid": "detector-score", title: "How well this version did on the accuracy areas" }, t.score === null ? "no score" : `F-score ${Math.round(t.score)}%`) : null,
  );
}

export function imageStatusBadge(status: string): HTMLElement {
  return h("span", { class: `badge badge-${status}`, "data-status": status }, status === "ingesting" || status === "uploaded" ? h("span", { class: "spinner" }) : null, STATUS_TEXT[status] ?? status);
}

export function projectView(root: HTMLElement, ctx: AppContext, params: Record<string, string>): () => void {
  const projectId = params.id;
  let alive = true;
  let pollTimer: number | undefined;
  let project: Project | null = null;
  let images: ImageInfo[] = [];
  const uploads: Upload[] = [];

  const title = h("h1", null, "…");
  const subtitle = h("p", { class: "lead" });
  const uploadList = h("div", { class: "upload-list", "data-testid": "uploads" });
  const imageList = h("div", { class: "image-list", "data-testid": "image-list" });
  const detectorList = h("div", { class: "detector-list", "data-testid": "detector-list" });
  const detectorForm = h("div");
  const fileInput = h("input", {
    type: "file",
    multiple: true,
    accept: ACCEPTED_EXTENSIONS.join(","),
    class: "visually-hidden",
    "data-testid": "file-input",
    onchange: () => {
      startUploads(Array.from(fileInput.files ?? []));
      fileInput.value = "";
    },
  });
  const dropZone = h(
    "label",
    {
      class: "drop-zone",
      "data-testid": "drop-zone",
      ondragover: (e: DragEvent) => {
        e.preventDefault();
        dropZone.classList.add("drag");
      },
      ondragleave: () => dropZone.classList.remove("drag"),
      ondrop: (e: DragEvent) => {
        e.preventDefault();
        dropZone.classList.remove("drag");
        startUploads(Array.from(e.dataTransfer?.files ?? []));
      },
    },
    fileInput,
    icon("upload", 28),
    h("strong", null, "Drop images here or click to choose"),
    h("span", { class: "muted" }, "GeoTIFF, JPEG 2000, PNG or JPEG · large files welcome"),
  );

  root.append(
    h(
      "div",
      { class: "page" },
      h("div", { class: "page-head" }, h("div", null, title, subtitle)),
      h(
        "div",
        { class: "two-col" },
        h(
          "section",
          { class: "panel", "aria-labelledby": "images-title" },
          h("div", { class: "panel-head" }, h("h2", { id: "images-title" }, icon("image"), "Images")),
          dropZone,
          uploadList,
          imageList,
        ),
        h(
          "section",
          { class: "panel", "aria-labelledby": "detectors-title" },
          h(
            "div",
            { class: "panel-head" },
            h("h2", { id: "detectors-title" }, icon("target"), "Detectors"),
            h("button", { class: "btn btn-primary btn-small", "data-testid": "new-detector", onclick: () => showDetectorForm() }, icon("plus"), "New detector"),
          ),
          h("p", { class: "muted small" }, "A detector learns to find one or more kinds of objects from the outlines you draw."),
          detectorForm,
          detectorList,
        ),
      ),
    ),
  );

  function startUploads(files: File[]): void {
    for (const file of files) {
      const upload = new Upload(ctx.api, projectId, file);
      uploads.push(upload);
      const row = uploadRow(upload);
      uploadList.append(row);
      upload.onChange((state) => {
        if (state.phase === "done") {
          setTimeout(() => row.remove(), 400);
          refreshImages();
        }
      });
      upload.run();
    }
  }

  function uploadRow(upload: Upload): HTMLElement {
    const bar = h("div", { class: "progress-fill" });
    const progress = h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0, "aria-label": `Upload of ${upload.state.file.name}` }, bar);
    const text = h("span", { class: "upload-text muted" });
    const error = h("p", { class: "row-error", role: "alert" });
    const retry = h("button", { class: "btn btn-small", hidden: true, "data-testid": "retry-upload", onclick: () => upload.run() }, "Retry");
    const row = h(
      "div",
      { class: "upload-row", "data-testid": "upload-row" },
      h("div", { class: "upload-name" }, h("strong", null, upload.state.file.name), text),
      progress,
      h("div", { class: "upload-actions" }, retry),
      error,
    );
    const render = (state: UploadState) => {
      const pct = state.total ? Math.round((state.loaded / state.total) * 100) : 0;
      bar.style.width = `${state.phase === "done" || state.phase === "finishing" ? 100 : pct}%`;
      progress.setAttribute("aria-valuenow", String(pct));
      row.dataset.phase = state.phase;
      text.textContent =
        state.phase === "starting"
          ? "Starting…"
          : state.phase === "sending"
            ? `${formatBytes(state.loaded)} of ${formatBytes(state.total)} · ${pct}%`
            : state.phase === "finishing"
              ? "Finishing…"
              : state.phase === "done"
                ? "Uploaded"
                : state.retryable
                  ? "Upload failed"
                  : "Not uploaded";
      error.textContent = state.error ?? "";
      retry.hidden = state.phase !== "failed" || !state.retryable;
      row.classList.toggle("failed", state.phase === "failed");
    };
    render(upload.state);
    upload.onChange(render);
    return row;
  }

  function imageRow(image: ImageInfo): HTMLElement {
    const details: string[] = [];
    if (image.width && image.height) details.push(`${image.width.toLocaleString()} × ${image.height.toLocaleString()} px`);
    if (image.gsd) details.push(image.gsd < 1 ? `${Math.round(image.gsd * 100)} cm per pixel` : `${image.gsd.toFixed(1)} m per pixel`);
    if (image.file_size) details.push(formatBytes(image.file_size));
    return h(
      "div",
      { class: `image-row status-${image.status}`, "data-testid": "image-row", "data-image-id": image.id, "data-status": image.status },
      thumbnail(ctx.api, image),
      h(
        "div",
        { class: "image-main" },
        h("div", { class: "image-title" }, h("strong", null, image.name || image.original_filename), imageStatusBadge(image.status)),
        h("div", { class: "muted small" }, details.join(" · ") || `Added ${timeAgo(image.created_at)}`),
        image.status === "failed" && image.error ? h("p", { class: "row-error", role: "alert", "data-testid": "image-error" }, image.error) : null,
      ),
      h(
        "button",
        {
          class: "icon-btn",
          title: "Delete image",
          "aria-label": `Delete ${image.name}`,
          onclick: async () => {
            if (!(await confirmDialog("Delete this image?", `“${image.name}” and everything drawn on it will be deleted.`))) return;
            try {
              await ctx.api.delete(`images/${image.id}/`);
              refreshImages();
            } catch (e) {
              toast(errorMessage(e), "error");
            }
          },
        },
        icon("trash"),
      ),
    );
  }

  function renderImages(): void {
    clear(imageList);
    if (!images.length) {
      imageList.append(h("p", { class: "muted empty-line" }, "No image yet. Upload one to get started."));
      return;
    }
    for (const image of images) imageList.append(imageRow(image));
  }

  async function refreshImages(): Promise<void> {
    try {
      const fresh = await ctx.api.list<ImageInfo>("images/", { project: projectId, ordering: "-created_at" });
      if (!alive) return;
      const changed = JSON.stringify(fresh.map((i) => [i.id, i.status, i.error])) !== JSON.stringify(images.map((i) => [i.id, i.status, i.error]));
      images = fresh;
      if (changed) renderImages();
      schedulePoll();
    } catch (e) {
      if (alive) toast(errorMessage(e), "error");
    }
  }

  function schedulePoll(): void {
    window.clearTimeout(pollTimer);
    const busy = images.some((i) => i.status === "uploaded" || i.status === "ingesting");
    if (busy && alive) pollTimer = window.setTimeout(refreshImages, 1500);
  }

  function detectorCard(detector: Detector): HTMLElement {
    return h(
      "a",
      { class: "detector-card", href: `${BASE}detectors/${detector.id}`, "data-link": "", "data-testid": "detector-card" },
      h(
        "div",
        null,
        h("strong", null, detector.name),
        detector.kind === "change" ? h("span", { class: "badge", "data-testid": "detector-kind", title: "Compares two images of the same place at two dates" }, "Two dates") : null,
        detectorFacts(detector),
        h("div", { class: "chips" }, ...detector.classes.map((c) => h("span", { class: "chip" }, h("span", { class: "swatch", style: { background: c.color } }), c.name))),
      ),
      h("span", { class: "btn btn-small" }, "Open", icon("back", 14)),
    );
  }

  async function refreshDetectors(): Promise<void> {
    try {
      const detectors = await ctx.api.list<Detector>("detectors/", { project: projectId, ordering: "-created_at" });
      if (!alive) return;
      clear(detectorList);
      if (!detectors.length) detectorList.append(h("p", { class: "muted empty-line" }, "No detector yet. Create one, then draw on your images to teach it."));
      for (const d of detectors) detectorList.append(detectorCard(d));
    } catch (e) {
      if (alive) toast(errorMessage(e), "error");
    }
  }

  function showDetectorForm(): void {
    clear(detectorForm);
    const name = h("input", { name: "detector-name", required: true, maxlength: 200, placeholder: "e.g. Trees", autocomplete: "off" });
    // What the detector compares: objects on one image, or what changed between two dates of the same place.
    const kind = h(
      "select",
      { name: "detector-kind", "data-testid": "detector-kind" },
      h("option", { value: "single" }, "Find objects on an image"),
      h("option", { value: "change" }, "Find changes between two dates of the same place"),
    );
    const kindHint = h("p", { class: "muted small", hidden: true }, "Each image you draw on is compared with a second image of the same place: choose it in the detector's Images panel. Outline what changed.");
    kind.addEventListener("change", () => {
      kindHint.hidden = kind.value !== "change";
      // Each image checked is a first date: a pair's second image is chosen in the workspace, not drawn on.
      if (kind.value === "change") imageChecks.forEach((check, i) => ((check.querySelector("input") as HTMLInputElement).checked = i === 0));
    });
    const classRows = h("div", { class: "class-rows" });
    const addClassRow = (value = "") => {
      const color = PALETTE[classRows.children.length % PALETTE.length];
      const row = h(
        "div",
        { class: "class-row" },
        h("input", { type: "color", value: color, "aria-label": "Colour", class: "color-input" }),
        h("input", { name: "class-name", placeholder: "What to find, e.g. tree", value, required: true, maxlength: 100, autocomplete: "off" }),
        h("button", { type: "button", class: "icon-btn", "aria-label": "Remove", title: "Remove", onclick: () => classRows.children.length > 1 && row.remove() }, "×"),
      );
      classRows.append(row);
    };
    addClassRow();
    const ready = images.filter((i) => i.status === "ready");
    const imageChecks = ready.map((i) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", checked: true, value: i.id }), i.name),
    );
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      {
        class: "inline-form subtle",
        "data-testid": "detector-form",
        onsubmit: async (event: Event) => {
          event.preventDefault();
          error.textContent = "";
          if (!project) return;
          const classes = Array.from(classRows.querySelectorAll(".class-row")).map((row) => ({
            name: (row.querySelector('input[name="class-name"]') as HTMLInputElement).value.trim(),
            color: (row.querySelector('input[type="color"]') as HTMLInputElement).value.toUpperCase(),
          }));
          try {
            const detector = await ctx.api.post<Detector>("detectors/", {
              organization: project.organization,
              project: project.id,
              name: name.value.trim(),
              kind: kind.value,
              initial_classes: classes,
            });
            for (const check of imageChecks) {
              const input = check.querySelector("input") as HTMLInputElement;
              if (input.checked) await ctx.api.post("detector-images/", { detector: detector.id, image: input.value });
            }
            ctx.navigate(`${BASE}detectors/${detector.id}`);
          } catch (e) {
            error.textContent = errorMessage(e);
          }
        },
      },
      h("label", null, "Name", name),
      h("label", null, "What it does", kind, kindHint),
      h("div", { class: "field" }, h("span", { class: "field-label" }, "Objects to find"), classRows, h("button", { type: "button", class: "btn btn-ghost btn-small", onclick: () => addClassRow() }, icon("plus", 14), "Add another kind of object")),
      ready.length ? h("div", { class: "field" }, h("span", { class: "field-label" }, "Images to draw on"), ...imageChecks) : h("p", { class: "muted small" }, "No ready image yet: you can add images later from the detector."),
      h("div", { class: "form-actions" }, h("button", { class: "btn btn-primary", type: "submit" }, "Create detector"), h("button", { class: "btn", type: "button", onclick: () => clear(detectorForm) }, "Cancel")),
      error,
    );
    detectorForm.append(form);
    name.focus();
  }

  (async () => {
    try {
      project = await ctx.api.get<Project>(`projects/${projectId}/`);
      if (!alive) return;
      title.textContent = project.name;
      subtitle.textContent = project.description || "Upload images, then create a detector and teach it what to find.";
      ctx.setTitle(project.name);
      ctx.setCrumbs([{ label: "Projects", href: BASE }, { label: project.name }]);
      await Promise.all([refreshImages(), refreshDetectors()]);
      if (!images.length) renderImages();
    } catch (e) {
      title.textContent = "Project unavailable";
      subtitle.textContent = errorMessage(e);
    }
  })();

  return () => {
    alive = false;
    window.clearTimeout(pollTimer);
  };
}
