// The arithmetic behind the Train panel, kept apart from the DOM so it is unit-tested: time left, the loss
// chart's path, and the score in plain words.

import type { RunStatus, ScoreBlock, TrainingRun } from "./types";

/** Seconds left as the worker measured them from its step rate (and its time budget); null until a few steps
 * are known. Not extrapolated from the start: that counts reading the data as training and overstates it. */
export function secondsLeft(run: Pick<TrainingRun, "progress">): number | null {
  const left = run.progress?.seconds_left;
  return typeof left === "number" && Number.isFinite(left) && left >= 0 ? left : null;
}

/** The line under an active run's progress bar: its step, or while it has none yet, why (waiting for a GPU
 * machine's training slot, or reading the training data). */
export function stepsInWords(run: Pick<TrainingRun, "progress">): string {
  const { step = 0, total = 0, waiting } = run.progress ?? {};
  if (total) return `Step ${step} of ${total}`;
  return waiting?.trim() || "Preparing the training data…";
}

export function formatDuration(seconds: number): string {
  if (seconds < 5) return "a few seconds";
  if (seconds < 60) return `${Math.round(seconds / 5) * 5} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** An SVG path (width x height box) for the loss history: a light moving average, scaled to its range. */
export function lossPath(history: number[], width: number, height: number, smoothing = 0.8): string {
  const values = history.filter((v) => Number.isFinite(v));
  if (values.length < 2) return "";
  const smooth: number[] = [];
  let ema = values[0];
  for (const v of values) {
    ema = smoothing * ema + (1 - smoothing) * v;
    smooth.push(ema);
  }
  const lo = Math.min(...smooth);
  const hi = Math.max(...smooth);
  const span = hi - lo || 1;
  const pad = 2;
  return smooth
    .map((v, i) => {
      const x = (i / (smooth.length - 1)) * width;
      const y = pad + (1 - (v - lo) / span) * (height - 2 * pad);
      return `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

export function percent(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? "–" : `${Math.round(value * 100)}%`;
}

/** "Found 23 of 25 objects, 2 false detections": what the score means, for a count detector. */
export function countSummary(block: ScoreBlock): string | null {
  if (block.n_true === undefined || block.n_pred === undefined || block.matches === undefined) return null;
  const falseDetections = block.n_pred - block.matches;
  const objects = block.n_true === 1 ? "object" : "objects";
  const falses = falseDetections === 1 ? "false detection" : "false detections";
  return `Found ${block.matches} of ${block.n_true} ${objects}, ${falseDetections} ${falses}`;
}

/** Queued or running: the panels poll while a run is in this state. */
export function isActive(run: { status: RunStatus } | null | undefined): boolean {
  return run?.status === "pending" || run?.status === "running";
}

/** The run a panel shows first: the running or queued one, else the newest. */
export function currentRun(runs: TrainingRun[]): TrainingRun | null {
  return runs.find(isActive) ?? runs[0] ?? null;
}

/** The version Detect uses: the chosen one, else the newest successful one (as the server decides). */
export function detectVersion(runs: TrainingRun[], chosen: string | null): TrainingRun | null {
  const succeeded = runs.filter((r) => r.status === "succeeded");
  return succeeded.find((r) => r.id === chosen) ?? succeeded[0] ?? null;
}

const STOPPED_BECAUSE: Record<string, string> = {
  steps: "it ran all its planned steps",
  "time budget": "it reached its time limit",
  converged: "it had stopped improving",
};

/** What was trained and for how long, in plain words: the model card's summary with its "(stopped: …)" told
 * as a sentence. Null until the run is trained (older versions have no summary). */
export function trainedInWords(run: Pick<TrainingRun, "status" | "progress">): string | null {
  const summary = run.status === "succeeded" ? run.progress?.summary?.trim() : undefined;
  if (!summary) return null;
  const why = STOPPED_BECAUSE[run.progress.stop_reason ?? ""];
  const tail = ` (stopped: ${run.progress.stop_reason}).`;
  return why && summary.endsWith(tail) ? `${summary.slice(0, -tail.length)}. It stopped because ${why}.` : summary;
}
