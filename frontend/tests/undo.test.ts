import { describe, expect, it } from "vitest";

import { type Command, UndoStack } from "../src/undo";

function counter() {
  const state = { value: 0 };
  const add = (n: number): Command => ({ label: `add ${n}`, undo: () => void (state.value -= n), redo: () => void (state.value += n) });
  return { state, add };
}

describe("UndoStack", () => {
  it("undoes and redoes in order", async () => {
    const stack = new UndoStack();
    const { state, add } = counter();
    for (const n of [1, 2, 3]) {
      state.value += n;
      stack.push(add(n));
    }
    expect(stack.undoLabel).toBe("add 3");
    expect(await stack.undo()).toBe(true);
    expect(await stack.undo()).toBe(true);
    expect(state.value).toBe(1);
    expect(stack.redoLabel).toBe("add 2");
    await stack.redo();
    expect(state.value).toBe(3);
    expect(stack.canRedo).toBe(true);
  });

  it("drops the redo history on a new edit", async () => {
    const stack = new UndoStack();
    const { state, add } = counter();
    state.value += 5;
    stack.push(add(5));
    await stack.undo();
    state.value += 7;
    stack.push(add(7));
    expect(stack.canRedo).toBe(false);
    expect(await stack.redo()).toBe(false);
    expect(state.value).toBe(7);
  });

  it("returns false when there is nothing to undo", async () => {
    const stack = new UndoStack();
    expect(stack.canUndo).toBe(false);
    expect(await stack.undo()).toBe(false);
  });

  it("keeps a command whose undo failed, so it can be retried", async () => {
    const stack = new UndoStack();
    let fail = true;
    stack.push({ label: "save", undo: async () => { if (fail) throw new Error("offline"); }, redo: () => {} });
    await expect(stack.undo()).rejects.toThrow("offline");
    expect(stack.canUndo).toBe(true);
    fail = false;
    expect(await stack.undo()).toBe(true);
    expect(stack.canRedo).toBe(true);
  });

  it("refuses to interleave while a command runs", async () => {
    const stack = new UndoStack();
    let release!: () => void;
    stack.push({ label: "a", undo: () => {}, redo: () => {} });
    stack.push({ label: "b", undo: () => new Promise<void>((resolve) => (release = resolve)), redo: () => {} });
    const first = stack.undo();
    expect(stack.busy).toBe(true);
    expect(stack.canUndo).toBe(false);
    expect(await stack.undo()).toBe(false);
    release();
    expect(await first).toBe(true);
    expect(stack.undoLabel).toBe("a");
  });

  it("bounds its history and notifies listeners", async () => {
    const stack = new UndoStack(2);
    let changes = 0;
    stack.onChange(() => changes++);
    for (const label of ["a", "b", "c"]) stack.push({ label, undo: () => {}, redo: () => {} });
    await stack.undo();
    await stack.undo();
    expect(await stack.undo()).toBe(false);
    expect(changes).toBeGreaterThanOrEqual(3);
  });
});
