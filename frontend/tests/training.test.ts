import { describe, expect, it } from "vitest";

import { countSummary, currentRun, detectVersion, formatDuration, isActive, lossPath, percent, secondsLeft, stepsInWords, trainedInWords } from "../src/training";
import type { TrainingRun } from "../src/types";

function run(partial: Partial<TrainingRun>): TrainingRun {
  return {
    id: "r",
    detector: "d",
    version: 1,
    status: "succeeded",
    error: "",
    progress: {},
    metrics: {},
    stats: {},
    created_at: "2026-01-01T00:00:00Z",
    started_at: null,
    finished_at: null,
    ...partial,
  };
}

describe("secondsLeft", () => {
  it("is what the worker measured from its step rate", () => {
    const r = run({ status: "running", started_at: "2026-01-01T00:00:00Z", progress: { step: 100, total: 400, seconds_left: 42.5 } });
    expect(secondsLeft(r)).toBe(42.5);
  });
  it("knows nothing until a few steps are measured, whatever the time since the start", () => {
    expect(secondsLeft(run({ started_at: "2000-01-01T00:00:00Z", progress: { step: 3, total: 400 } }))).toBeNull();
    expect(secondsLeft(run({ progress: {} }))).toBeNull();
  });
});

describe("stepsInWords", () => {
  it("gives the step once training runs", () => {
    expect(stepsInWords(run({ status: "running", progress: { step: 120, total: 500, waiting: "stale" } }))).toBe("Step 120 of 500");
  });
  it("says why there is no step yet: a GPU slot, else the data being read", () => {
    const waiting = "Waiting for the GPU: other trainings are using it.";
    expect(stepsInWords(run({ status: "running", progress: { step: 0, waiting } }))).toBe(waiting);
    expect(stepsInWords(run({ status: "running", progress: {} }))).toBe("Preparing the training data…");
    expect(stepsInWords(run({ status: "pending", progress: { waiting: "  " } }))).toBe("Preparing the training data…");
  });
});

describe("formatDuration", () => {
  it("speaks in plain units", () => {
    expect(formatDuration(3)).toBe("a few seconds");
    expect(formatDuration(43)).toBe("45 s");
    expect(formatDuration(150)).toBe("3 min");
    expect(formatDuration(3 * 3600 + 120)).toBe("3 h 2 min");
  });
});

describe("lossPath", () => {
  it("draws one point per step, highest loss at the top", () => {
    const path = lossPath([4, 3, 2, 1], 100, 50, 0);
    const points = path.split(" ").map((p) => p.slice(1).split(",").map(Number));
    expect(points).toHaveLength(4);
    expect(points[0]).toEqual([0, 2]);
    expect(points[3]).toEqual([100, 48]);
    expect(points.map((p) => p[1])).toEqual([...points.map((p) => p[1])].sort((a, b) => a - b));
  });
  it("needs two finite points", () => {
    expect(lossPath([1], 100, 50)).toBe("");
    expect(lossPath([Number.NaN, 2], 100, 50)).toBe("");
  });
});

describe("scores in words", () => {
  it("percent and counts", () => {
    expect(percent(0.874)).toBe("87%");
    expect(percent(undefined)).toBe("–");
    expect(countSummary({ n_true: 25, n_pred: 25, matches: 23 })).toBe("Found 23 of 25 objects, 2 false detections");
    expect(countSummary({ n_true: 1, n_pred: 2, matches: 1 })).toBe("Found 1 of 1 object, 1 false detection");
    expect(countSummary({ precision: 1 })).toBeNull();
  });
});

describe("which run", () => {
  const runs = [
    run({ id: "c", version: 3, status: "failed" }),
    run({ id: "b", version: 2, status: "succeeded" }),
    run({ id: "a", version: 1, status: "succeeded" }),
  ];
  it("polls while queued or running only", () => {
    expect([run({ status: "pending" }), run({ status: "running" })].every(isActive)).toBe(true);
    expect([run({ status: "partial" }), run({ status: "succeeded" }), null].some(isActive)).toBe(false);
  });
  it("shows the running one first, else the newest", () => {
    expect(currentRun(runs)?.id).toBe("c");
    expect(currentRun([run({ id: "x", status: "succeeded" }), run({ id: "y", status: "running" })])?.id).toBe("y");
    expect(currentRun([])).toBeNull();
  });
  it("detects with the chosen version, else the newest successful one", () => {
    expect(detectVersion(runs, "a")?.id).toBe("a");
    expect(detectVersion(runs, null)?.id).toBe("b");
    expect(detectVersion(runs, "c")?.id).toBe("b");
  });
});

describe("what was trained", () => {
  const summary = "Trained 500 steps in 38 s on 21 outlines, on top of a network pretrained on everyday photos (stopped: time budget).";
  it("tells why it stopped as a sentence", () => {
    expect(trainedInWords(run({ progress: { summary, stop_reason: "time budget" } }))).toBe(
      "Trained 500 steps in 38 s on 21 outlines, on top of a network pretrained on everyday photos. It stopped because it reached its time limit.",
    );
  });
  it("keeps a summary it cannot reword", () => {
    const odd = "Trained 3 steps in 1 s on 2 outlines (stopped: meteor).";
    expect(trainedInWords(run({ progress: { summary: odd, stop_reason: "meteor" } }))).toBe(odd);
  });
  it("says nothing before the run is trained, or for versions without a summary", () => {
    expect(trainedInWords(run({ status: "running", progress: { summary, stop_reason: "time budget" } }))).toBeNull();
    expect(trainedInWords(run({ progress: {} }))).toBeNull();
  });
});
