// The workspace's shapes (areas and outlines) and their saving: edits reach the server one at a time, in the
// order they were made; each edit of a saved shape carries the version this tab has (`If-Match`), so a tab
// that is behind never overwrites a change made elsewhere (412: the server's version is shown instead);
// undo/redo of drawing, deleting, reshaping and reclassifying; and the catch-up with what other tabs or
// people changed meanwhile.
//
// No OpenLayers and no DOM here: the shapes are handles the map owns (OpenLayers features in the app), reached
// through `ShapeLayers`, and the REST calls are injected, so all of this is unit-tested (tests/store.test.ts).

import { ApiError } from "../api";
import { errorMessage } from "../dom";
import { AREA_LABELS } from "../areas";
import type { Annotation, Area, AreaKind, Polygon } from "../types";
import { UndoStack } from "../undo";

export type ServerShape = Area | Annotation;
export type ShapeType = "area" | "outline";
export type SaveState = "saved" | "saving" | "error";
export type SaveOutcome = "saved" | "conflict";

/** What the store reads and writes on a shape: its properties `type` ("area" or "outline"), `kind` (areas),
 * `classId` (outlines), `id` and `updatedAt` (its version on the server, once saved). An OpenLayers Feature is one. */
export interface ShapeHandle {
  get(key: string): unknown;
  set(key: string, value: unknown, silent?: boolean): void;
  unset(key: string): void;
  setId(id: string | number | undefined): void;
  setProperties(values: Record<string, unknown>): void;
}

/** The map side: where shapes are shown, and their geometry. `G` is a geometry kept by the map (a snapshot
 * from before a gesture), put back by `restore`. */
export interface ShapeLayers<S extends ShapeHandle, G> {
  /** Show the shape (no-op when it is shown already). */
  add(shape: S): void;
  /** Stop showing it (and drop it from the selection). */
  remove(shape: S): void;
  /** The shapes of one type shown now. */
  shapes(type: ShapeType): S[];
  /** A new, empty shape (not shown). */
  create(): S;
  /** The shape's geometry as the API takes it. */
  geometry(shape: S): Polygon;
  /** Give the shape a geometry the server sent. */
  setGeometry(shape: S, geometry: Polygon): void;
  /** Give the shape back a geometry it had. */
  restore(shape: S, geometry: G): void;
}

/** The REST calls the store makes (the app passes its `Api`). */
export interface ShapeApi {
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body: unknown): Promise<T>;
  patch<T>(path: string, body: unknown, headers?: Record<string, string>): Promise<T>;
  delete(path: string): Promise<void>;
  list<T>(path: string, params?: Record<string, string | number | undefined>): Promise<T[]>;
}

export interface ShapeStoreOptions<S extends ShapeHandle, G> {
  api: ShapeApi;
  layers: ShapeLayers<S, G>;
  /** The detector and the image open now; null while none is. */
  where(): { detector: string; image: string } | null;
  /** A message for the user (a toast in the app). */
  notify(message: string, kind: "error" | "info"): void;
  /** The save indicator: what is pending, or why the last save failed. */
  onSaveState?(state: SaveState, message: string): void;
  /** Waits between tries of a save that failed on the way (no answer, or a gateway's 502/503/504). */
  retryDelays?: number[];
  sleep?(ms: number): Promise<void>;
}

export const CHANGED_ELSEWHERE = "This shape was changed or deleted in another tab (or by someone else): the latest version is shown.";

/** Serial saving: edits reach the server in the order they were made; `onState` tells what is pending. A job that
 * fails does not stop the ones after it. */
export class SaveQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private lastError: string | null = null;
  constructor(private readonly onState: (state: SaveState, message: string) => void) {}

  run<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    this.report();
    const result = this.tail.then(job);
    this.tail = result.catch(() => undefined);
    result.then(
      () => {
        this.pending--;
        this.lastError = null;
        this.report();
      },
      (error) => {
        this.pending--;
        this.lastError = errorMessage(error);
        this.report();
      },
    );
    return result;
  }

  /** Edits are still on their way to the server. */
  get busy(): boolean {
    return this.pending > 0;
  }

  private report(): void {
    if (this.pending > 0) this.onState("saving", "Saving…");
    else if (this.lastError) this.onState("error", `Not saved: ${this.lastError}`);
    else this.onState("saved", "All changes saved");
  }
}

const GATEWAY = new Set([502, 503, 504]);

/** Worth another try: the server never answered (status 0) or a gateway in front of it could not reach it. A
 * create is tried again only in the second case: without an answer it may have been saved already. */
function transient(error: unknown, repeatable: boolean): boolean {
  return error instanceof ApiError && (GATEWAY.has(error.status) || (repeatable && error.status === 0));
}

export class ShapeStore<S extends ShapeHandle, G> {
  readonly undo = new UndoStack();
  private readonly queue: SaveQueue;
  private readonly api: ShapeApi;
  private readonly layers: ShapeLayers<S, G>;
  private readonly retryDelays: number[];
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly options: ShapeStoreOptions<S, G>) {
    this.api = options.api;
    this.layers = options.layers;
    this.queue = new SaveQueue(options.onSaveState ?? (() => undefined));
    this.retryDelays = options.retryDelays ?? [500, 2000];
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Edits are still on their way to the server. */
  get busy(): boolean {
    return this.queue.busy;
  }

  /** "training area", "outline": how messages and undo labels name a shape. */
  static shapeName(shape: ShapeHandle): string {
    return shape.get("type") === "area" ? AREA_LABELS[shape.get("kind") as AreaKind].toLowerCase() : "outline";
  }

  // ---- Loading -----------------------------------------------------------------------------------------------

  /** The detector's areas and outlines on one image, as the server has them (new shapes, not shown yet). */
  async load(detector: string, image: string): Promise<[S[], S[]]> {
    const [areas, annotations] = await this.listShapes(detector, image);
    return [areas.map((a) => this.fromServer(a)), annotations.map((a) => this.fromServer(a))];
  }

  /** Take what other tabs or people drew, changed or deleted since: returns how many changes were taken, or
   * null when skipped (no image open, `ready()` false, or edits of this tab still being saved). Nothing taken
   * is saved back. */
  async catchUp(ready: () => boolean): Promise<number | null> {
    const where = this.options.where();
    if (!where || !ready() || this.busy) return null;
    let areas: Area[];
    let annotations: Annotation[];
    try {
      [areas, annotations] = await this.listShapes(where.detector, where.image);
    } catch {
      return null;
    }
    if (this.options.where()?.image !== where.image || !ready() || this.busy) return null;
    let changes = 0;
    for (const [type, shapes] of [["area", areas], ["outline", annotations]] as const) {
      const local = new Map(
        this.layers
          .shapes(type)
          .filter((s) => s.get("id"))
          .map((s) => [s.get("id") as string, s]),
      );
      for (const shape of shapes as ServerShape[]) {
        const existing = local.get(shape.id);
        local.delete(shape.id);
        if (!existing) {
          this.layers.add(this.fromServer(shape));
          changes++;
        } else if (existing.get("updatedAt") !== shape.updated_at) {
          this.apply(existing, shape);
          changes++;
        }
      }
      for (const gone of local.values()) {
        this.layers.remove(gone);
        changes++;
      }
    }
    return changes;
  }

  // ---- Edits (each one saved, then recorded for undo) ------------------------------------------------------------

  /** A shape just drawn: shown, saved, recorded for undo. When the server refuses it, it goes and the user is told. */
  async add(shape: S): Promise<void> {
    this.layers.add(shape);
    try {
      await this.create(shape);
    } catch (error) {
      this.layers.remove(shape);
      this.options.notify(`The ${ShapeStore.shapeName(shape)} was not saved: ${errorMessage(error)}`, "error");
      return;
    }
    this.undo.push({
      label: `draw ${ShapeStore.shapeName(shape)}`,
      undo: async () => {
        this.layers.remove(shape);
        try {
          await this.remove(shape);
        } catch (error) {
          this.layers.add(shape);
          throw error;
        }
      },
      redo: async () => {
        this.layers.add(shape);
        try {
          await this.create(shape);
        } catch (error) {
          this.layers.remove(shape);
          throw error;
        }
      },
    });
  }

  /** Delete shapes; those the server would not delete come back, and the user is told. */
  async delete(shapes: S[]): Promise<void> {
    if (!shapes.length) return;
    shapes.forEach((s) => this.layers.remove(s));
    const results = await Promise.allSettled(shapes.map((s) => this.remove(s)));
    const failed = shapes.filter((_, i) => results[i].status === "rejected");
    failed.forEach((s) => this.layers.add(s));
    if (failed.length) {
      const reason = (results.find((r) => r.status === "rejected") as PromiseRejectedResult).reason;
      this.options.notify(`Could not delete: ${errorMessage(reason)}`, "error");
    }
    const deleted = shapes.filter((s) => !failed.includes(s));
    if (!deleted.length) return;
    const label = deleted.length === 1 ? `delete ${ShapeStore.shapeName(deleted[0])}` : `delete ${deleted.length} shapes`;
    this.undo.push({
      label,
      undo: async () => {
        for (const s of deleted) {
          this.layers.add(s);
          await this.create(s);
        }
      },
      redo: async () => {
        for (const s of deleted) {
          this.layers.remove(s);
          await this.remove(s);
        }
      },
    });
  }

  /** Shapes reshaped or moved on the map (`now` is their geometry, `old` the one before): saved and recorded. A
   * shape changed elsewhere meanwhile takes the server's version; when saving fails, all go back to `old`. */
  async reshaped(changes: Array<{ shape: S; old: G; now: G }>, verb: string): Promise<void> {
    if (!changes.length) return;
    let outcomes: SaveOutcome[];
    try {
      outcomes = await Promise.all(changes.map(({ shape }) => this.update(shape, { geometry: this.layers.geometry(shape) })));
    } catch (error) {
      changes.forEach(({ shape, old }) => this.layers.restore(shape, old));
      await Promise.allSettled(changes.map(({ shape }) => this.update(shape, { geometry: this.layers.geometry(shape) })));
      this.options.notify(`The change was not saved: ${errorMessage(error)}`, "error");
      return;
    }
    if (outcomes.includes("conflict")) this.options.notify(CHANGED_ELSEWHERE, "info");
    const saved = changes.filter((_, i) => outcomes[i] === "saved");
    if (!saved.length) return;
    const apply = async (which: "old" | "now") => {
      for (const change of saved) {
        this.layers.restore(change.shape, change[which]);
        if ((await this.update(change.shape, { geometry: this.layers.geometry(change.shape) })) === "conflict") throw new Error(CHANGED_ELSEWHERE);
      }
    };
    const what = saved.length === 1 ? ShapeStore.shapeName(saved[0].shape) : `${saved.length} shapes`;
    this.undo.push({ label: `${verb} ${what}`, undo: () => apply("old"), redo: () => apply("now") });
  }

  /** Outlines given another kind of object (class). */
  async reclassify(shapes: S[], classId: string): Promise<void> {
    const old = shapes.map((s) => s.get("classId") as string);
    const apply = async (ids: string[]) => {
      for (const [i, s] of shapes.entries()) {
        s.set("classId", ids[i]);
        await this.update(s, { detector_class: ids[i] });
      }
    };
    try {
      await apply(shapes.map(() => classId));
      this.undo.push({ label: "change object kind", undo: () => apply(old), redo: () => apply(shapes.map(() => classId)) });
    } catch (error) {
      shapes.forEach((s, i) => s.set("classId", old[i]));
      this.options.notify(errorMessage(error), "error");
    }
  }

  // ---- Saving --------------------------------------------------------------------------------------------------

  private endpoint(shape: ShapeHandle): string {
    return shape.get("type") === "area" ? "areas/" : "annotations/";
  }

  /** `request`, tried again after the waits in `retryDelays` while it fails on the way (see `transient`). */
  private async retrying<T>(request: () => Promise<T>, repeatable: boolean): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await request();
      } catch (error) {
        if (attempt >= this.retryDelays.length || !transient(error, repeatable)) throw error;
        await this.sleep(this.retryDelays[attempt]);
      }
    }
  }

  private create(shape: S): Promise<void> {
    return this.queue.run(async () => {
      const where = this.options.where();
      if (!where) throw new Error("No image is open.");
      const body: Record<string, unknown> = { detector: where.detector, image: where.image, geometry: this.layers.geometry(shape) };
      if (shape.get("type") === "area") body.kind = shape.get("kind");
      else body.detector_class = shape.get("classId");
      const saved = await this.retrying(() => this.api.post<ServerShape>(this.endpoint(shape), body), false);
      shape.set("id", saved.id);
      shape.set("updatedAt", saved.updated_at);
      shape.setId(saved.id);
    });
  }

  private remove(shape: S): Promise<void> {
    return this.queue.run(async () => {
      const id = shape.get("id") as string | undefined;
      if (!id) return;
      try {
        await this.retrying(() => this.api.delete(`${this.endpoint(shape)}${id}/`), true);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
      }
      shape.unset("id");
      shape.setId(undefined);
    });
  }

  /** Save an edit made from the version this tab has (`If-Match`). When another tab or person changed or deleted
   * the shape since, nothing is overwritten: the server's version replaces ours on the map ("conflict"). */
  private update(shape: S, body: Record<string, unknown>): Promise<SaveOutcome> {
    return this.queue.run(async () => {
      const id = shape.get("id") as string | undefined;
      if (!id) throw new Error("This shape is not saved yet.");
      const version = shape.get("updatedAt") as string | undefined;
      const headers = version ? { "If-Match": `"${version}"` } : undefined;
      try {
        const saved = await this.retrying(() => this.api.patch<ServerShape>(`${this.endpoint(shape)}${id}/`, body, headers), true);
        shape.set("updatedAt", saved.updated_at);
        return "saved";
      } catch (error) {
        if (!(error instanceof ApiError && (error.status === 412 || error.status === 404))) throw error;
        await this.takeServerVersion(shape);
        return "conflict";
      }
    });
  }

  private async takeServerVersion(shape: S): Promise<void> {
    try {
      const latest = await this.api.get<ServerShape>(`${this.endpoint(shape)}${shape.get("id")}/`);
      this.apply(shape, latest);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      this.layers.remove(shape);
      shape.unset("id");
      shape.setId(undefined);
    }
  }

  private listShapes(detector: string, image: string): Promise<[Area[], Annotation[]]> {
    return Promise.all([this.api.list<Area>("areas/", { detector, image }), this.api.list<Annotation>("annotations/", { detector, image })]);
  }

  private apply(shape: S, server: ServerShape): void {
    this.layers.setGeometry(shape, server.geometry);
    if ("kind" in server) shape.setProperties({ type: "area", kind: server.kind });
    else shape.setProperties({ type: "outline", classId: server.detector_class });
    shape.set("id", server.id);
    shape.set("updatedAt", server.updated_at);
    shape.setId(server.id);
  }

  private fromServer(server: ServerShape): S {
    const shape = this.layers.create();
    this.apply(shape, server);
    return shape;
  }
}
