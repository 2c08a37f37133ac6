// The workspace's Detect panel: choose images, start; cells done and failed (with "retry failed cells"),
// megapixels per second and time left while it runs; counts per class and area and the downloads when done.
// The objects themselves reach the map as vector tiles, through `hooks.showRun`.

import type { AppContext } from "../app";
import { clear, errorMessage, h, icon, timeAgo, toast } from "../dom";
import { Poller } from "../poller";
import { formatDuration, isActive } from "../training";
import type { DetectionCount, DetectionRun, Detector, ImageInfo } from "../types";

export interface DetectionHooks {
  /** Ready images of the detector, and the one open on the map. */
  images(): ImageInfo[];
  currentImageId(): string | null;
  /** A change detector's second date of an image (null when not chosen). */
  secondImageOf(imageId: string): string | null;
  /** Draw this run's objects (vector tiles) on the map; `finished` tells the layer its tiles are final. */
  showRun(run: DetectionRun | null): void;
}

const POLL_MS = 2000;
const WORDS: Record<string, string> = {
  pending: "Waiting for a worker…",
  running: "Detecting…",
  succeeded: "Done",
  partial: "Done, some parts failed",
  failed: "Failed",
  cancelled: "Cancelled",
};

export function detectionPanel(ctx: AppContext, detector: Detector, hooks: DetectionHooks): { element: HTMLElement; refresh(): void; dispose(): void } {
  let alive = true;
  let runs: DetectionRun[] = [];
  let shownFor = "";
  const chosen = new Set<string>();

  const imagesEl = h("div", { class: "detect-images", "data-testid": "detect-images" });
  const button = h("button", { class: "btn btn-block", "data-testid": "detect-button", onclick: () => start() }, icon("target", 16), "Detect objects");
  const errorEl = h("p", { class: "form-error", role: "alert" });
  const statusEl = h("div", { class: "detect-status", "data-testid": "detect-status" });
  const element = h("div", { class: "ws-detect" }, imagesEl, button, errorEl, statusEl);

  const change = detector.kind === "change";

  function renderImages(): void {
    clear(imagesEl);
    if (change) {
      imagesEl.append(h("p", { class: "muted small" }, "Compares the open image with its second date (only inside its detection areas, if it has any)."));
      return;
    }
    const images = hooks.images();
    if (!chosen.size && hooks.currentImageId()) chosen.add(hooks.currentImageId()!);
    if (images.length <= 1) {
      imagesEl.append(h("p", { class: "muted small" }, images.length ? "Runs over the whole image (only inside its detection areas, if it has any)." : "Add a ready image first."));
      return;
    }
    for (const image of images) {
      const box = h("input", { type: "checkbox", checked: chosen.has(image.id), onchange: () => (box.checked ? chosen.add(image.id) : chosen.delete(image.id)) });
      imagesEl.append(h("label", { class: "layer-row" }, box, h("span", null, image.name)));
    }
  }

  async function start(): Promise<void> {
    errorEl.textContent = "";
    const ready = new Set(hooks.images().map((i) => i.id));
    const current = hooks.currentImageId();
    // A change detector compares one pair: the open image and its second date (the server says what is wrong).
    const images = change ? (current ? [current] : []) : [...chosen].filter((id) => ready.has(id));
    if (!images.length && ready.size === 1) images.push([...ready][0]);
    if (!images.length) {
      errorEl.textContent = change ? "Open an image first." : "Choose at least one image.";
      return;
    }
    const body = change ? { images, second_image: hooks.secondImageOf(images[0]) } : { images };
    button.disabled = true;
    try {
      const run = await ctx.api.post<DetectionRun>(`detectors/${detector.id}/detect/`, body);
      runs = [run, ...runs];
      render();
      poller.schedule();
    } catch (e) {
      errorEl.textContent = errorMessage(e);
      button.disabled = false;
    }
  }

  async function act(run: DetectionRun, path: string): Promise<void> {
    try {
      await ctx.api.post(`detection-runs/${run.id}/${path}/`);
      await poller.refresh();
    } catch (e) {
      toast(errorMessage(e), "error");
    }
  }

  async function results(run: DetectionRun, host: HTMLElement): Promise<void> {
    try {
      const [links, counts] = await Promise.all([
        ctx.api.get<Record<string, string>>(`detection-runs/${run.id}/downloads/`),
        ctx.api.get<{ results: DetectionCount[] }>(`detection-runs/${run.id}/counts/`),
      ]);
      if (!alive) return;
      const rows = counts.results.filter((c) => c.count > 0 || counts.results.length <= 6);
      host.append(
        h(
          "table",
          { class: "data-table counts", "data-testid": "detect-counts" },
          h("thead", null, h("tr", null, h("th", null, "Where"), h("th", null, "Class"), h("th", null, "Count"))),
          h("tbody", null, ...rows.map((c) => h("tr", null, h("td", null, run.images.length > 1 ? `${c.image_name} · ${c.area}` : c.area), h("td", null, c.class_name), h("td", { "data-testid": "count-value" }, c.count.toLocaleString())))),
        ),
        h(
          "div",
          { class: "downloads", "data-testid": "downloads" },
          ...[["geojson", "GeoJSON"], ["gpkg", "GeoPackage"], ["csv", "Counts (CSV)"]]
            .filter(([fmt]) => links[fmt])
            .map(([fmt, label]) => h("a", { class: "btn btn-small", href: links[fmt], download: "", "data-format": fmt }, label)),
        ),
      );
    } catch (e) {
      host.append(h("p", { class: "form-error" }, errorMessage(e)));
    }
  }

  function render(): void {
    renderImages();
    clear(statusEl);
    const run = runs[0] ?? null;
    button.disabled = isActive(run);
    const key = run ? `${run.id}:${run.status}:${run.cells_done}` : "";
    if (key !== shownFor) {
      shownFor = key;
      hooks.showRun(run);
    }
    if (!run) return;
    statusEl.dataset.status = run.status;
    statusEl.append(h("div", { class: "train-head" }, h("strong", null, `Detection · ${timeAgo(run.created_at)}`), h("span", { class: `run-status run-${run.status === "partial" ? "failed" : run.status}` }, WORDS[run.status] ?? run.status)));
    const pct = run.cells_total ? Math.round((100 * (run.cells_done + run.cells_failed)) / run.cells_total) : 0;
    const rate = run.progress?.megapixels_per_second;
    statusEl.append(
      h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": "Detection progress" }, h("div", { class: "progress-fill", style: { width: `${pct}%` } })),
      h(
        "p",
        { class: "small muted", "data-testid": "detect-progress" },
        `${run.cells_done} of ${run.cells_total} parts done`,
        run.cells_failed ? `, ${run.cells_failed} failed` : "",
        ` · ${run.objects_count.toLocaleString()} objects`,
        rate ? ` · ${rate.toFixed(2)} MP/s` : "",
        isActive(run) && run.progress?.seconds_left ? ` · about ${formatDuration(run.progress.seconds_left)} left` : "",
      ),
    );
    if (run.error) statusEl.append(h("p", { class: "form-error" }, run.error));
    if (isActive(run)) statusEl.append(h("button", { class: "btn btn-small", onclick: () => act(run, "cancel") }, "Cancel"));
    if (run.status === "partial") statusEl.append(h("button", { class: "btn btn-small btn-primary", "data-testid": "retry-cells", onclick: () => act(run, "retry-failed-cells") }, "Retry failed parts"));
    if (run.status === "succeeded" || run.status === "partial") {
      const host = h("div");
      statusEl.append(host);
      results(run, host);
    }
  }

  async function load(): Promise<void> {
    const fresh = await ctx.api.get<{ results: DetectionRun[] }>("detection-runs/", { detector: detector.id, page_size: 5 });
    if (!alive) return;
    const before = runs[0];
    runs = fresh.results;
    const now = runs[0];
    if (before && now && before.id === now.id && isActive(before) && !isActive(now)) {
      toast(`Detection finished: ${now.objects_count.toLocaleString()} objects`, now.status === "succeeded" ? "success" : "info");
    }
    render();
  }

  // Polls while the newest run is queued or running.
  const poller = new Poller({ intervalMs: POLL_MS, load, active: () => alive && isActive(runs[0]), onError: (e) => toast(errorMessage(e), "error") });

  poller.refresh();
  return {
    element,
    refresh: renderImages,
    dispose() {
      alive = false;
      poller.stop();
    },
  };
}
