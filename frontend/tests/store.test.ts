import { beforeEach, describe, expect, it } from "vitest";

import { ApiError } from "../src/api";
import type { Annotation, Area, Polygon } from "../src/types";
import { CHANGED_ELSEWHERE, type SaveState, type ServerShape, type ShapeApi, type ShapeLayers, ShapeStore, type ShapeType } from "../src/workspace/store";

// ---- A server with the API's rules: versions (ETags) on every shape, `If-Match` checked on PATCH -------------------

interface Call {
  method: string;
  path: string;
  body?: Record<string, unknown>;
  headers?: Record<string, string>;
}

type Stored = Area & Annotation & { type: ShapeType };

function square(x: number, size = 1): Polygon {
  return { type: "Polygon", coordinates: [[[x, 0], [x + size, 0], [x + size, size], [x, size], [x, 0]]] };
}

class FakeServer {
  readonly shapes = new Map<string, Stored>();
  readonly calls: Call[] = [];
  private failures: Array<{ method: string; error: ApiError }> = [];
  private clock = 0;
  private ids = 0;

  /** The next `method` request fails with `error` (once per call of this). */
  failNext(method: string, status: number): void {
    this.failures.push({ method, error: new ApiError(status, `failed with ${status}`) });
  }

  /** Another tab (or person) saves a shape: a new version. */
  store(type: ShapeType, fields: Partial<Area & Annotation>): Stored {
    const id = fields.id ?? `s${++this.ids}`;
    const previous = this.shapes.get(id);
    const shape = { ...previous, ...fields, id, type, updated_at: `v${++this.clock}` } as Stored;
    if (type === "area") shape.kind ??= "training";
    else shape.detector_class ??= "c1";
    shape.geometry ??= square(0);
    this.shapes.set(id, shape);
    return shape;
  }

  /** As the API sends it: an area has a kind, an outline a class. */
  public(shape: Stored): ServerShape {
    const { type, kind, detector_class, ...rest } = structuredClone(shape);
    return type === "area" ? { ...rest, kind } : { ...rest, detector_class };
  }

  mutations(): Call[] {
    return this.calls.filter((c) => c.method !== "GET" && c.method !== "LIST");
  }

  private fail(method: string): void {
    const i = this.failures.findIndex((f) => f.method === method);
    if (i >= 0) throw this.failures.splice(i, 1)[0].error;
  }

  private parse(path: string): { type: ShapeType; id?: string } {
    const [collection, id] = path.split("/");
    return { type: collection === "areas" ? "area" : "outline", id: id || undefined };
  }

  private found(path: string): Stored {
    const shape = this.shapes.get(this.parse(path).id!);
    if (!shape) throw new ApiError(404, "This item no longer exists, or you cannot see it.");
    return shape;
  }

  readonly api: ShapeApi = {
    get: async <T>(path: string) => {
      this.calls.push({ method: "GET", path });
      this.fail("GET");
      return this.public(this.found(path)) as T;
    },
    list: async <T>(path: string) => {
      this.calls.push({ method: "LIST", path });
      this.fail("LIST");
      const type = this.parse(path).type;
      return [...this.shapes.values()].filter((s) => s.type === type).map((s) => this.public(s)) as T[];
    },
    post: async <T>(path: string, body: unknown) => {
      this.calls.push({ method: "POST", path, body: structuredClone(body) as Record<string, unknown> });
      this.fail("POST");
      const { geometry, kind, detector_class } = body as Record<string, never>;
      return this.public(this.store(this.parse(path).type, { geometry, kind, detector_class })) as T;
    },
    patch: async <T>(path: string, body: unknown, headers?: Record<string, string>) => {
      this.calls.push({ method: "PATCH", path, body: structuredClone(body) as Record<string, unknown>, headers });
      this.fail("PATCH");
      const shape = this.found(path);
      const match = headers?.["If-Match"];
      if (match && match !== `"${shape.updated_at}"`) throw new ApiError(412, "This was changed elsewhere.");
      return this.public(this.store(shape.type, { ...(body as object), id: shape.id })) as T;
    },
    delete: async (path: string) => {
      this.calls.push({ method: "DELETE", path });
      this.fail("DELETE");
      this.found(path);
      this.shapes.delete(this.parse(path).id!);
    },
  };
}

// ---- Shapes and a "map" that shows them -------------------------------------------------------------------------

class FakeShape {
  props: Record<string, unknown> = {};
  featureId: string | number | undefined;
  geometry: Polygon = square(0);
  get(key: string): unknown {
    return this.props[key];
  }
  set(key: string, value: unknown): void {
    this.props[key] = value;
  }
  unset(key: string): void {
    delete this.props[key];
  }
  setId(id: string | number | undefined): void {
    this.featureId = id;
  }
  setProperties(values: Record<string, unknown>): void {
    Object.assign(this.props, values);
  }
}

class FakeMap implements ShapeLayers<FakeShape, Polygon> {
  readonly shown = new Set<FakeShape>();
  add(shape: FakeShape): void {
    this.shown.add(shape);
  }
  remove(shape: FakeShape): void {
    this.shown.delete(shape);
  }
  shapes(type: ShapeType): FakeShape[] {
    return [...this.shown].filter((s) => s.get("type") === type);
  }
  create(): FakeShape {
    return new FakeShape();
  }
  geometry(shape: FakeShape): Polygon {
    return structuredClone(shape.geometry);
  }
  setGeometry(shape: FakeShape, geometry: Polygon): void {
    shape.geometry = structuredClone(geometry);
  }
  restore(shape: FakeShape, geometry: Polygon): void {
    shape.geometry = structuredClone(geometry);
  }
}

function setup(options: { retryDelays?: number[] } = {}) {
  const server = new FakeServer();
  const map = new FakeMap();
  const messages: Array<{ message: string; kind: string }> = [];
  const states: SaveState[] = [];
  const waits: number[] = [];
  const where = { detector: "d1", image: "i1" };
  const store = new ShapeStore<FakeShape, Polygon>({
    api: server.api,
    layers: map,
    where: () => where,
    notify: (message, kind) => messages.push({ message, kind }),
    onSaveState: (state) => states.push(state),
    retryDelays: options.retryDelays ?? [100, 400],
    sleep: async (ms) => void waits.push(ms),
  });
  return { server, map, store, messages, states, waits };
}

function outline(classId = "c1", x = 0): FakeShape {
  const shape = new FakeShape();
  shape.setProperties({ type: "outline", classId });
  shape.geometry = square(x);
  return shape;
}

/** Open the image: what the server has, shown. */
async function open(ctx: ReturnType<typeof setup>): Promise<FakeShape[]> {
  const [areas, outlines] = await ctx.store.load("d1", "i1");
  [...areas, ...outlines].forEach((s) => ctx.map.add(s));
  return [...areas, ...outlines];
}

/** Reshape a shown shape to `geometry`, as a drag on the map does, and save it. */
function reshape(ctx: ReturnType<typeof setup>, shape: FakeShape, geometry: Polygon): Promise<void> {
  const old = structuredClone(shape.geometry);
  shape.geometry = structuredClone(geometry);
  return ctx.store.reshaped([{ shape, old, now: structuredClone(geometry) }], "reshape");
}

describe("ShapeStore: saving with versions", () => {
  let ctx: ReturnType<typeof setup>;
  beforeEach(() => {
    ctx = setup();
  });

  it("creates a drawn shape with the open image and detector, and keeps the id and version the server gives", async () => {
    const shape = outline("c2", 3);
    await ctx.store.add(shape);
    expect(ctx.server.mutations()).toEqual([
      { method: "POST", path: "annotations/", body: { detector: "d1", image: "i1", geometry: square(3), detector_class: "c2" } },
    ]);
    const saved = [...ctx.server.shapes.values()][0];
    expect(shape.get("id")).toBe(saved.id);
    expect(shape.featureId).toBe(saved.id);
    expect(shape.get("updatedAt")).toBe(saved.updated_at);
    expect(ctx.map.shown.has(shape)).toBe(true);
    expect(ctx.states.at(-1)).toBe("saved");
    expect(ctx.store.undo.undoLabel).toBe("draw outline");
  });

  it("sends If-Match with the version it has, and keeps the new version for the next edit", async () => {
    const stored = ctx.server.store("outline", { geometry: square(0) });
    const [shape] = await open(ctx);
    await reshape(ctx, shape, square(5));
    const second = ctx.server.shapes.get(stored.id)!.updated_at;
    expect(shape.get("updatedAt")).toBe(second);
    await reshape(ctx, shape, square(6));
    const patches = ctx.server.calls.filter((c) => c.method === "PATCH");
    expect(patches.map((p) => p.headers)).toEqual([{ "If-Match": `"${stored.updated_at}"` }, { "If-Match": `"${second}"` }]);
    expect(second).not.toBe(stored.updated_at);
    expect(shape.get("updatedAt")).toBe(ctx.server.shapes.get(stored.id)!.updated_at);
    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(6));
    expect(ctx.messages).toEqual([]);
  });

  it("on 412 (changed in another tab) overwrites nothing and shows the server's version instead of the edit", async () => {
    const stored = ctx.server.store("outline", { geometry: square(0) });
    const [shape] = await open(ctx);
    const elsewhere = ctx.server.store("outline", { id: stored.id, geometry: square(7) }); // the other tab's reshape
    await reshape(ctx, shape, square(5));

    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(7)); // the other edit stands
    expect(shape.geometry).toEqual(square(7)); // and is what this tab shows now
    expect(shape.get("updatedAt")).toBe(elsewhere.updated_at);
    expect(ctx.map.shapes("outline")).toEqual([shape]); // the same shape, not a copy
    expect(ctx.server.calls.filter((c) => c.method === "PATCH")).toHaveLength(1); // not retried over the other edit
    expect(ctx.server.shapes.size).toBe(1);
    expect(ctx.messages).toEqual([{ message: CHANGED_ELSEWHERE, kind: "info" }]);
    expect(ctx.store.undo.canUndo).toBe(false); // nothing of ours to undo
    expect(ctx.states.at(-1)).toBe("saved");

    // The next edit starts from the server's version and goes through.
    await reshape(ctx, shape, square(8));
    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(8));
    expect(ctx.server.calls.filter((c) => c.method === "PATCH").at(-1)!.headers).toEqual({ "If-Match": `"${elsewhere.updated_at}"` });
  });

  it("on a conflict over a shape deleted elsewhere, takes it off the map", async () => {
    const stored = ctx.server.store("outline", {});
    const [shape] = await open(ctx);
    ctx.server.shapes.delete(stored.id);
    await reshape(ctx, shape, square(5));
    expect(ctx.map.shown.size).toBe(0);
    expect(shape.get("id")).toBeUndefined();
    expect(ctx.server.shapes.size).toBe(0); // not created again
    expect(ctx.messages.map((m) => m.message)).toEqual([CHANGED_ELSEWHERE]);
  });

  it("when two shapes move together and one conflicts, records only the other for undo", async () => {
    const a = ctx.server.store("outline", { geometry: square(0) });
    const b = ctx.server.store("outline", { geometry: square(2) });
    const shapes = await open(ctx);
    const [sa, sb] = [a, b].map((s) => shapes.find((f) => f.get("id") === s.id)!);
    ctx.server.store("outline", { id: b.id, geometry: square(9) });
    sa.geometry = square(10);
    sb.geometry = square(12);
    await ctx.store.reshaped([{ shape: sa, old: square(0), now: square(10) }, { shape: sb, old: square(2), now: square(12) }], "move");
    expect(ctx.server.shapes.get(a.id)!.geometry).toEqual(square(10));
    expect(ctx.server.shapes.get(b.id)!.geometry).toEqual(square(9));
    expect(ctx.store.undo.undoLabel).toBe("move outline");
    await ctx.store.undo.undo();
    expect(ctx.server.shapes.get(a.id)!.geometry).toEqual(square(0));
    expect(ctx.server.shapes.get(b.id)!.geometry).toEqual(square(9)); // the other tab's edit is left alone
  });
});

describe("ShapeStore: failed saves", () => {
  it("tries a PATCH again after a network error, keeping later edits behind it", async () => {
    const ctx = setup();
    const stored = ctx.server.store("outline", { geometry: square(0) });
    const [shape] = await open(ctx);
    ctx.server.failNext("PATCH", 0);
    const moved = reshape(ctx, shape, square(5));
    const drawn = outline("c1", 20);
    const added = ctx.store.add(drawn); // made after the move: must reach the server after it
    await Promise.all([moved, added]);

    expect(ctx.waits).toEqual([100]);
    expect(ctx.server.mutations().map((c) => c.method)).toEqual(["PATCH", "PATCH", "POST"]);
    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(5));
    expect(ctx.server.shapes.size).toBe(2);
    expect(ctx.messages).toEqual([]);
    expect(ctx.states.at(-1)).toBe("saved");
    expect(ctx.store.undo.undoLabel).toBe("draw outline");
  });

  it("tries a create again when a gateway answers 503, but not without an answer (it may have been saved)", async () => {
    const ctx = setup();
    ctx.server.failNext("POST", 503);
    ctx.server.failNext("POST", 503);
    const first = outline("c1", 1);
    await ctx.store.add(first);
    expect(ctx.waits).toEqual([100, 400]);
    expect(ctx.server.shapes.size).toBe(1);
    expect(first.get("id")).toBeDefined();

    ctx.server.failNext("POST", 0);
    const second = outline("c1", 2);
    await ctx.store.add(second);
    expect(ctx.server.calls.filter((c) => c.method === "POST")).toHaveLength(4); // 3 for the first, 1 for the second
    expect(ctx.server.shapes.size).toBe(1); // never twice
    expect(ctx.map.shown.has(second)).toBe(false);
    expect(ctx.messages).toEqual([{ message: "The outline was not saved: failed with 0", kind: "error" }]);
    expect(ctx.states.at(-1)).toBe("error");
  });

  it("gives up after its tries, says so, and the next edit still goes through", async () => {
    const ctx = setup();
    const area = new FakeShape();
    area.setProperties({ type: "area", kind: "testing" });
    for (let i = 0; i < 3; i++) ctx.server.failNext("POST", 502);
    const failed = ctx.store.add(area);
    const next = outline("c1", 4);
    const ok = ctx.store.add(next);
    await failed;
    expect(ctx.messages).toEqual([{ message: "The testing area was not saved: failed with 502", kind: "error" }]);
    expect(ctx.map.shown.has(area)).toBe(false);
    await ok;
    expect(ctx.server.calls.filter((c) => c.method === "POST").map((c) => c.path)).toEqual(["areas/", "areas/", "areas/", "annotations/"]);
    expect(ctx.map.shown.has(next)).toBe(true);
    expect(ctx.states.at(-1)).toBe("saved");
    expect(ctx.store.undo.undoLabel).toBe("draw outline");
  });

  it("does not try a refused request again (400), and puts a refused reshape back", async () => {
    const ctx = setup();
    const stored = ctx.server.store("outline", { geometry: square(0) });
    const [shape] = await open(ctx);
    ctx.server.failNext("PATCH", 400);
    await reshape(ctx, shape, square(5));
    expect(shape.geometry).toEqual(square(0));
    const patches = ctx.server.calls.filter((c) => c.method === "PATCH");
    expect(patches.map((c) => c.body)).toEqual([{ geometry: square(5) }, { geometry: square(0) }]); // the edit, then the way back
    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(0));
    expect(ctx.waits).toEqual([]);
    expect(ctx.messages).toEqual([{ message: "The change was not saved: failed with 400", kind: "error" }]);
    expect(ctx.store.undo.canUndo).toBe(false);
  });

  it("keeps a shape the server would not delete, and tries a DELETE again after a network error", async () => {
    const ctx = setup();
    const a = ctx.server.store("outline", {});
    const b = ctx.server.store("outline", {});
    const shapes = await open(ctx);
    ctx.server.failNext("DELETE", 403);
    ctx.server.failNext("DELETE", 0);
    await ctx.store.delete(shapes);
    expect([...ctx.server.shapes.keys()]).toEqual([a.id]);
    expect(ctx.server.shapes.has(b.id)).toBe(false);
    expect([...ctx.map.shown].map((s) => s.get("id"))).toEqual([a.id]);
    expect(ctx.messages).toEqual([{ message: "Could not delete: failed with 403", kind: "error" }]);
    expect(ctx.store.undo.undoLabel).toBe("delete outline");
  });
});

describe("ShapeStore: undo and redo", () => {
  it("undoes a drawing with a DELETE and redoes it with a new POST", async () => {
    const ctx = setup();
    const shape = outline("c1", 1);
    await ctx.store.add(shape);
    const firstId = shape.get("id") as string;
    await ctx.store.undo.undo();
    expect(ctx.server.mutations().at(-1)).toEqual({ method: "DELETE", path: `annotations/${firstId}/` });
    expect(ctx.server.shapes.size).toBe(0);
    expect(ctx.map.shown.size).toBe(0);
    expect(shape.get("id")).toBeUndefined();
    await ctx.store.undo.redo();
    expect(ctx.server.mutations().at(-1)).toMatchObject({ method: "POST", path: "annotations/", body: { geometry: square(1) } });
    expect(ctx.server.shapes.size).toBe(1);
    expect(shape.get("id")).not.toBe(firstId);
    expect(ctx.server.shapes.has(shape.get("id") as string)).toBe(true);
    expect(ctx.map.shown.has(shape)).toBe(true);
  });

  it("undoes a delete by creating the shapes again, and redoes it by deleting the new ones", async () => {
    const ctx = setup();
    ctx.server.store("area", { kind: "accuracy", geometry: square(0, 5) });
    ctx.server.store("outline", { detector_class: "c2", geometry: square(1) });
    const shapes = await open(ctx);
    await ctx.store.delete(shapes);
    expect(ctx.store.undo.undoLabel).toBe("delete 2 shapes");
    expect(ctx.server.shapes.size).toBe(0);
    await ctx.store.undo.undo();
    const posts = ctx.server.calls.filter((c) => c.method === "POST");
    expect(posts.map((c) => [c.path, c.body])).toEqual([
      ["areas/", { detector: "d1", image: "i1", geometry: square(0, 5), kind: "accuracy" }],
      ["annotations/", { detector: "d1", image: "i1", geometry: square(1), detector_class: "c2" }],
    ]);
    expect(ctx.map.shown.size).toBe(2);
    const recreated = shapes.map((s) => s.get("id"));
    expect(new Set(ctx.server.shapes.keys())).toEqual(new Set(recreated));
    await ctx.store.undo.redo();
    expect(ctx.server.calls.filter((c) => c.method === "DELETE").slice(-2).map((c) => c.path)).toEqual([`areas/${recreated[0]}/`, `annotations/${recreated[1]}/`]);
    expect(ctx.server.shapes.size).toBe(0);
  });

  it("undoes a reshape with a PATCH of the old geometry on the newest version, and redoes it", async () => {
    const ctx = setup();
    const stored = ctx.server.store("outline", { geometry: square(0) });
    const [shape] = await open(ctx);
    await reshape(ctx, shape, square(5));
    const version = ctx.server.shapes.get(stored.id)!.updated_at;
    await ctx.store.undo.undo();
    expect(ctx.server.mutations().at(-1)).toEqual({ method: "PATCH", path: `annotations/${stored.id}/`, body: { geometry: square(0) }, headers: { "If-Match": `"${version}"` } });
    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(0));
    expect(shape.geometry).toEqual(square(0));
    await ctx.store.undo.redo();
    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(5));
    expect(shape.geometry).toEqual(square(5));
  });

  it("refuses to undo a reshape over a change made elsewhere, and keeps it to try again", async () => {
    const ctx = setup();
    const stored = ctx.server.store("outline", { geometry: square(0) });
    const [shape] = await open(ctx);
    await reshape(ctx, shape, square(5));
    ctx.server.store("outline", { id: stored.id, geometry: square(9) });
    await expect(ctx.store.undo.undo()).rejects.toThrow(CHANGED_ELSEWHERE);
    expect(ctx.server.shapes.get(stored.id)!.geometry).toEqual(square(9));
    expect(shape.geometry).toEqual(square(9));
    expect(ctx.store.undo.canUndo).toBe(true);
  });

  it("undoes a change of object kind", async () => {
    const ctx = setup();
    const stored = ctx.server.store("outline", { detector_class: "c1" });
    const [shape] = await open(ctx);
    await ctx.store.reclassify([shape], "c2");
    expect(ctx.server.shapes.get(stored.id)!.detector_class).toBe("c2");
    await ctx.store.undo.undo();
    expect(ctx.server.mutations().at(-1)).toMatchObject({ method: "PATCH", body: { detector_class: "c1" } });
    expect(ctx.server.shapes.get(stored.id)!.detector_class).toBe("c1");
    expect(shape.get("classId")).toBe("c1");
  });
});

describe("ShapeStore: catching up with other tabs", () => {
  it("takes shapes added, changed and deleted elsewhere, and saves nothing back", async () => {
    const ctx = setup();
    const kept = ctx.server.store("outline", { geometry: square(0) });
    const changed = ctx.server.store("outline", { geometry: square(2) });
    const deleted = ctx.server.store("area", {});
    await open(ctx);
    ctx.server.store("outline", { id: changed.id, geometry: square(3), detector_class: "c2" });
    ctx.server.shapes.delete(deleted.id);
    const added = ctx.server.store("area", { kind: "testing", geometry: square(4) });
    const before = ctx.server.mutations().length;

    expect(await ctx.store.catchUp(() => true)).toBe(3);
    expect(ctx.server.mutations().length).toBe(before); // no echo
    const byId = new Map([...ctx.map.shown].map((s) => [s.get("id"), s]));
    expect([...byId.keys()].sort()).toEqual([kept.id, changed.id, added.id].sort());
    expect(byId.get(changed.id)!.geometry).toEqual(square(3));
    expect(byId.get(changed.id)!.get("classId")).toBe("c2");
    expect(byId.get(changed.id)!.get("updatedAt")).toBe(ctx.server.shapes.get(changed.id)!.updated_at);
    expect(byId.get(added.id)!.get("kind")).toBe("testing");
    expect(ctx.store.undo.canUndo).toBe(false);

    expect(await ctx.store.catchUp(() => true)).toBe(0); // nothing new: nothing changes
    expect(ctx.map.shown.size).toBe(3);
  });

  it("waits while this tab's edits are being saved, or while the map is not ready", async () => {
    const ctx = setup();
    await open(ctx);
    ctx.server.store("outline", {});
    const lists = () => ctx.server.calls.filter((c) => c.method === "LIST").length;
    const listed = lists();
    expect(await ctx.store.catchUp(() => false)).toBeNull();
    const saving = ctx.store.add(outline("c1", 9));
    expect(await ctx.store.catchUp(() => true)).toBeNull();
    expect(lists()).toBe(listed); // not even asked
    await saving;
    expect(ctx.map.shown.size).toBe(1);
    expect(await ctx.store.catchUp(() => true)).toBe(1);
    expect(ctx.map.shown.size).toBe(2);
  });

  it("keeps what it has when the list cannot be had", async () => {
    const ctx = setup();
    ctx.server.store("outline", {});
    await open(ctx);
    ctx.server.failNext("LIST", 0);
    expect(await ctx.store.catchUp(() => true)).toBeNull();
    expect(ctx.map.shown.size).toBe(1);
  });
});
