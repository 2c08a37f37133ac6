// The workspace's Train panel: one button; queued and running states with progress, a live loss chart and
// the time left; the score with per-accuracy-area scores when done; the list of versions with the one
// Detect uses. What the shown version predicted and where it erred go to the map through `hooks`.

import { ApiError } from "../api";
import type { AppContext } from "../app";
import { clear, errorMessage, h, icon, timeAgo, toast } from "../dom";
import { Poller } from "../poller";
import { countSummary, currentRun, detectVersion, formatDuration, isActive, lossPath, percent, secondsLeft, stepsInWords, trainedInWords } from "../training";
import type { ReviewKind } from "../styles";
import type { Detector, FeatureCollection, TrainingRun } from "../types";
import { type SuggestionHooks, suggestionsCard } from "./suggestions";

export interface TrainingHooks extends SuggestionHooks {
  /** The shown version's predictions in testing areas and its review of accuracy areas (null: none). */
  showResults(predictions: FeatureCollection | null, review: FeatureCollection | null): void;
  /** Zoom the map to the `index`-th reviewed object of `kind` on the open image; returns how many there are. */
  focusReview(kind: ReviewKind, index: number): number;
  /** The shown version's suggestions of where to label next (null: none). */
  showSuggestions(suggestions: FeatureCollection | null): void;
}

const POLL_MS = 1500;
const STATUS_WORDS: Record<string, string> = {
  pending: "Waiting for a worker…",
  running: "Training…",
  succeeded: "Trained",
  failed: "Training failed",
  cancelled: "Cancelled",
};

export function trainingPanel(ctx: AppContext, detector: Detector, hooks: TrainingHooks): { element: HTMLElement; drawingSaved(): void; dispose(): void } {
  let alive = true;
  let runs: TrainingRun[] = [];
  let shownId: string | null = null; // the version the user picked to look at; null: follow the current one
  let resultsFor: string | null = null;

  const trainButton = h("button", { class: "btn btn-primary btn-block", "data-testid": "train-button", onclick: () => train() }, icon("play", 16), "Train detector");
  const problems = h("div", { class: "train-problems", role: "alert", "data-testid": "train-problems" });
  const statusEl = h("div", { class: "train-status", "data-testid": "train-status" });
  const versionsEl = h("div", { class: "train-versions", "data-testid": "versions" });
  const suggestionsEl = h("div", { class: "train-suggestions" }); // filled when the shown version's results come
  const element = h("div", { class: "ws-train" }, trainButton, problems, statusEl, versionsEl);

  /** The problems Train answered, shown until the drawing no longer causes them (the server is asked again). */
  let problemsShown = false;
  function showProblems(list: string[]): void {
    clear(problems);
    problems.append(...list.map((text) => h("p", null, icon("warn", 14), " ", text)));
    problemsShown = list.length > 0;
  }

  let rechecking = false;
  let recheckAgain = false;
  /** The drawing reached the server: while problems are shown, ask what Train would answer now. */
  async function drawingSaved(): Promise<void> {
    if (!problemsShown || !alive) return;
    if (rechecking) {
      recheckAgain = true;
      return;
    }
    rechecking = true;
    try {
      do {
        recheckAgain = false;
        const check = await ctx.api.get<{ problems: string[] }>(`detectors/${detector.id}/training-check/`);
        if (alive && problemsShown) showProblems(check.problems);
      } while (recheckAgain && alive && problemsShown);
    } catch {
      // the next save asks again; the problems shown stay as Train said them
    } finally {
      rechecking = false;
    }
  }

  async function train(): Promise<void> {
    showProblems([]);
    trainButton.disabled = true;
    try {
      const run = await ctx.api.post<TrainingRun>(`detectors/${detector.id}/train/`);
      shownId = null;
      runs = [run, ...runs];
      render();
      poller.schedule();
    } catch (e) {
      const list = e instanceof ApiError && e.errors && typeof e.errors === "object" ? (e.errors as { problems?: string[] }).problems : undefined;
      showProblems(list?.length ? list : [errorMessage(e)]);
    } finally {
      trainButton.disabled = isActive(currentRun(runs));
    }
  }

  async function cancel(run: TrainingRun): Promise<void> {
    try {
      await ctx.api.post(`training-runs/${run.id}/cancel/`);
      await poller.refresh();
    } catch (e) {
      toast(errorMessage(e), "error");
    }
  }

  async function choose(run: TrainingRun): Promise<void> {
    try {
      detector = await ctx.api.patch<Detector>(`detectors/${detector.id}/`, { active_training_run: run.id });
      toast(`Detect now uses version ${run.version}`, "success");
      render();
    } catch (e) {
      toast(errorMessage(e), "error");
    }
  }

  function lossChart(history: number[]): SVGSVGElement {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 240 56");
    svg.setAttribute("class", "loss-chart");
    svg.setAttribute("data-testid", "loss-chart");
    svg.setAttribute("data-points", String(history.length));
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Training loss: lower is better");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", lossPath(history, 240, 56));
    svg.append(path);
    return svg;
  }

  function scoreCard(run: TrainingRun): HTMLElement {
    const m = run.metrics ?? {};
    if (m.score === null || m.score === undefined || !m.overall) {
      return h("div", { class: "score-card muted", "data-testid": "score" }, m.note ?? "Draw an accuracy area and outline its objects to get a score.");
    }
    const o = m.overall;
    const segmentation = m.detection_type === "segmentation";
    const areas = (m.per_area ?? []).map((a, i) =>
      h("li", { "data-testid": "area-score" }, h("span", null, `Accuracy area ${i + 1}`), h("strong", null, percent(a.f1)), segmentation ? null : h("small", { class: "muted" }, ` ${a.matches ?? 0}/${a.n_true ?? 0}`)),
    );
    return h(
      "div",
      { class: "score-card", "data-testid": "score", "data-score": String(m.score) },
      h("div", { class: "score-main" }, h("span", { class: "score-value" }, `${Math.round(m.score)}%`), h("span", { class: "score-label" }, "F-score")),
      h("div", { class: "score-parts" }, h("span", null, "Precision ", h("strong", null, percent(o.precision))), h("span", null, "Recall ", h("strong", null, percent(o.recall)))),
      segmentation ? null : h("p", { class: "small" }, countSummary(o) ?? ""),
      areas.length > 1 ? h("ul", { class: "area-scores" }, ...areas) : null,
      h("p", { class: "muted small" }, "On the map: ", h("span", { class: "key-miss" }, "missed objects"), " and ", h("span", { class: "key-false" }, "false detections"), " in your accuracy areas. Add training areas where it erred, then train again."),
    );
  }

  /** The check for the classic mistake: objects inside a training area left without an outline are learned
   * as "not an object". What the trained detector finds there that no outline covers is offered for a look. */
  function unoutlinedCheck(run: TrainingRun): HTMLElement | null {
    const n = run.metrics?.unoutlined;
    if (n === undefined) return null;
    if (n === 0) {
      return h("p", { class: "check-ok small", "data-testid": "unoutlined-check", "data-count": "0" }, icon("check", 14), " Nothing found in your training areas that you left without an outline.");
    }
    let at = -1; // the find shown on the map; -1: none yet
    const where = h("span", { class: "muted", "data-testid": "unoutlined-where" });
    const step = (to: number) => {
      const count = hooks.focusReview("unoutlined", to);
      at = count ? ((to % count) + count) % count : -1;
      where.textContent = count ? ` ${at + 1} of ${count} on this image` : " none on this image";
      prev.hidden = next.hidden = count < 2;
    };
    const show = h("button", { class: "btn btn-small", "data-testid": "show-unoutlined", onclick: () => step(Math.max(at, 0)) }, icon("zoom", 14), " Show me");
    const prev = h("button", { class: "btn btn-small", "data-testid": "unoutlined-prev", title: "Previous", "aria-label": "Previous", hidden: true, onclick: () => step(at - 1) }, "‹");
    const next = h("button", { class: "btn btn-small", "data-testid": "unoutlined-next", title: "Next", "aria-label": "Next", hidden: true, onclick: () => step(at + 1) }, "›");
    return h(
      "div",
      { class: "check-card", role: "status", "data-testid": "unoutlined-check", "data-count": String(n) },
      h("p", null, h("strong", null, `Check your training areas: ${n === 1 ? "1 thing" : `${n} things`} found there ${n === 1 ? "has" : "have"} no outline.`)),
      h("p", { class: "small" }, "They are drawn with a yellow dotted line and a “?”. If one is an object you want found, outline it: anything left without an outline is learned as “not an object”. Then train again."),
      h("div", { class: "check-actions" }, show, prev, next, where),
    );
  }

  function renderStatus(run: TrainingRun | null): void {
    clear(statusEl);
    if (!run) {
      statusEl.append(h("p", { class: "muted small center" }, "Draw a training area and outline the objects in it, then train."));
      return;
    }
    statusEl.dataset.status = run.status;
    statusEl.dataset.version = String(run.version);
    const head = h("div", { class: "train-head" }, h("strong", null, `Version ${run.version}`), h("span", { class: `run-status run-${run.status}` }, STATUS_WORDS[run.status] ?? run.status));
    statusEl.append(head);
    if (isActive(run)) {
      const { step = 0, total = 0 } = run.progress ?? {};
      const pct = total ? Math.min(100, Math.round((100 * step) / total)) : 0;
      const left = secondsLeft(run);
      statusEl.append(
        h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": "Training progress" }, h("div", { class: "progress-fill", style: { width: `${pct}%` } })),
        h("p", { class: "small muted", "data-testid": "train-steps" }, stepsInWords(run), left !== null ? ` · about ${formatDuration(left)} left` : ""),
      );
      if ((run.progress?.loss_history?.length ?? 0) > 1) statusEl.append(lossChart(run.progress.loss_history!));
      statusEl.append(h("button", { class: "btn btn-small", onclick: () => cancel(run) }, "Cancel"));
      return;
    }
    if (run.status === "failed") {
      statusEl.append(h("p", { class: "form-error" }, run.error || "Training failed. Please try again."));
      return;
    }
    if (run.status === "succeeded") {
      if ((run.progress?.loss_history?.length ?? 0) > 1) statusEl.append(lossChart(run.progress.loss_history!));
      statusEl.append(scoreCard(run));
      const trained = trainedInWords(run);
      if (trained) statusEl.append(h("p", { class: "muted small", "data-testid": "train-summary" }, trained));
      const check = unoutlinedCheck(run);
      if (check) statusEl.append(check);
      statusEl.append(suggestionsEl);
    }
  }

  function renderVersions(): void {
    clear(versionsEl);
    if (runs.length < 1) return;
    const used = detectVersion(runs, detector.active_training_run);
    versionsEl.append(h("h3", null, "Versions"));
    const list = h("ul", { class: "version-list" });
    for (const run of runs) {
      const shown = run.id === (shownId ?? currentRun(runs)?.id);
      const score = run.status === "succeeded" ? (run.metrics?.score ?? null) : null;
      const trained = trainedInWords(run);
      list.append(
        h(
          "li",
          { class: `version-row${shown ? " shown" : ""}`, "data-testid": "version-row", "data-version": String(run.version), "data-status": run.status },
          h(
            "button",
            { class: "version-pick", type: "button", title: `Show this version's score and predictions${trained ? `\n${trained}` : ""}`, onclick: () => ((shownId = run.id), render()) },
            h("strong", null, `v${run.version}`),
            h("span", null, score !== null ? `${Math.round(score)}%` : run.status === "succeeded" ? "no score" : STATUS_WORDS[run.status] ?? run.status),
            h("small", { class: "muted" }, timeAgo(run.created_at)),
          ),
          run.status === "succeeded"
            ? h("label", { class: "version-use", title: "The version Detect uses" }, h("input", { type: "radio", name: `detect-version-${detector.id}`, checked: used?.id === run.id, "data-testid": "use-version", onchange: () => choose(run) }), "Detect")
            : null,
        ),
      );
    }
    versionsEl.append(list);
  }

  async function showResults(run: TrainingRun | null): Promise<void> {
    const key = run && run.status === "succeeded" ? run.id : null;
    if (key === resultsFor) return;
    resultsFor = key;
    clear(suggestionsEl);
    if (!run || !key) {
      hooks.showResults(null, null);
      hooks.showSuggestions(null);
      return;
    }
    try {
      const [predictions, review, suggestions] = await Promise.all([
        ctx.api.get<FeatureCollection>(`training-runs/${run.id}/predictions/`),
        ctx.api.get<FeatureCollection>(`training-runs/${run.id}/review/`),
        ctx.api.get<FeatureCollection>(`training-runs/${run.id}/suggestions/`),
      ]);
      if (alive && resultsFor === key) {
        hooks.showResults(predictions, review);
        hooks.showSuggestions(suggestions);
        const card = suggestionsCard(suggestions, hooks);
        if (card) suggestionsEl.append(card);
      }
    } catch (e) {
      resultsFor = null;
      toast(errorMessage(e), "error");
    }
  }

  function render(): void {
    const active = currentRun(runs);
    const shown = runs.find((r) => r.id === shownId) ?? active;
    trainButton.disabled = isActive(active);
    renderStatus(shown);
    renderVersions();
    showResults(shown);
  }

  async function load(): Promise<void> {
    const fresh = await ctx.api.list<TrainingRun>("training-runs/", { detector: detector.id, ordering: "-version" });
    if (!alive) return;
    const wasActive = currentRun(runs);
    runs = fresh;
    const now = runs.find((r) => r.id === wasActive?.id);
    if (wasActive && now && wasActive.status !== now.status && now.status === "succeeded") {
      toast(now.metrics?.score != null ? `Version ${now.version} is trained: F-score ${Math.round(now.metrics.score)}%` : `Version ${now.version} is trained`, "success");
    }
    render();
  }

  // Polls while a run is queued or running.
  const poller = new Poller({ intervalMs: POLL_MS, load, active: () => alive && isActive(currentRun(runs)), onError: (e) => toast(errorMessage(e), "error") });

  poller.refresh();
  return {
    element,
    drawingSaved,
    dispose() {
      alive = false;
      poller.stop();
    },
  };
}
