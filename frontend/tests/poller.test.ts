import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Poller } from "../src/poller";

describe("Poller", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup(intervalMs = 1000, maxIntervalMs?: number) {
    const state = { active: true, fail: false, loads: 0, errors: [] as unknown[] };
    const poller = new Poller({
      intervalMs,
      maxIntervalMs,
      load: async () => {
        state.loads++;
        if (state.fail) throw new Error("offline");
      },
      active: () => state.active,
      onError: (e) => state.errors.push(e),
    });
    return { state, poller };
  }

  it("loads at once, then every interval while something is active, and stops when nothing is", async () => {
    const { state, poller } = setup(1000);
    await poller.refresh();
    expect(state.loads).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(state.loads).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(state.loads).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.loads).toBe(3);
    state.active = false;
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.loads).toBe(4); // the load that found nothing active
    expect(poller.polling).toBe(false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(state.loads).toBe(4);
  });

  it("does not poll when nothing is active, until told to (a run was started)", async () => {
    const { state, poller } = setup(500);
    state.active = false;
    await poller.refresh();
    await vi.advanceTimersByTimeAsync(5000);
    expect(state.loads).toBe(1);
    state.active = true;
    poller.schedule();
    await vi.advanceTimersByTimeAsync(500);
    expect(state.loads).toBe(2);
  });

  it("waits longer after each failure, up to a limit, and goes back to its pace once a load works", async () => {
    const { state, poller } = setup(1000, 4000);
    state.fail = true;
    await poller.refresh();
    expect(state.errors).toHaveLength(1);
    expect(poller.delay).toBe(2000);
    await vi.advanceTimersByTimeAsync(1999);
    expect(state.loads).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(state.loads).toBe(2);
    expect(poller.delay).toBe(4000);
    await vi.advanceTimersByTimeAsync(4000);
    expect(state.loads).toBe(3);
    expect(poller.delay).toBe(4000); // the limit
    state.fail = false;
    await vi.advanceTimersByTimeAsync(4000);
    expect(state.loads).toBe(4);
    expect(poller.delay).toBe(1000);
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.loads).toBe(5);
    expect(state.errors).toHaveLength(3);
  });

  it("stops for good when the view is left, even with a load on its way", async () => {
    const { state, poller } = setup(1000);
    await poller.refresh();
    poller.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(state.loads).toBe(1);
    await poller.refresh();
    poller.schedule();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(state.loads).toBe(1);

    let finish: () => void = () => undefined;
    const slow = new Poller({ intervalMs: 1000, load: () => new Promise<void>((resolve) => (finish = resolve)), active: () => true });
    const pending = slow.refresh();
    slow.stop();
    finish();
    await pending;
    expect(slow.polling).toBe(false);
  });

  it("keeps one timer when loads overlap (a refresh while one is scheduled)", async () => {
    const { state, poller } = setup(1000);
    await poller.refresh();
    await poller.refresh();
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.loads).toBe(3);
  });
});
