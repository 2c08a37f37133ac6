// Resource shapes as the API returns them (only the fields the app uses).

export interface Polygon {
  type: "Polygon";
  coordinates: number[][][];
}

export interface Organization {
  id: string;
  name: string;
  role: "owner" | "member" | null;
}

export interface Project {
  id: string;
  organization: string;
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
}

export type ImageStatus = "uploading" | "uploaded" | "ingesting" | "ready" | "failed";

export interface ImageInfo {
  id: string;
  project: string;
  name: string;
  status: ImageStatus;
  error: string;
  created_at: string;
  original_filename: string;
  file_size: number | null;
  width: number | null;
  height: number | null;
  band_count: number | null;
  gsd: number | null;
  footprint: Polygon | null;
  cog_version: string;
}

export interface UploadTicket {
  image: ImageInfo;
  upload_url: string;
  expires_at: string;
}

export interface DetectorClass {
  id: string;
  detector?: string;
  name: string;
  color: string;
  position: number;
}

export interface Detector {
  id: string;
  organization: string;
  project: string | null;
  name: string;
  /** "change": compares two images of the same place at two dates (each training image has a second date). */
  kind?: DetectorKind;
  detection_type: string;
  classes: DetectorClass[];
  active_training_run: string | null;
  /** Where training stands (the detector's card). */
  training?: TrainingSummary;
  created_at: string;
  updated_at: string;
}

export type DetectorKind = "single" | "change";

export interface TrainingSummary {
  /** The latest training's status, or "untrained". */
  status: RunStatus | "untrained";
  latest_version: number | null;
  /** The version Detect uses. */
  version: number | null;
  score: number | null;
}

export interface DetectorImage {
  id: string;
  detector: string;
  image: string;
  /** A change detector's second date of `image` (null until chosen). */
  second_image?: string | null;
  created_at: string;
}

export type AreaKind = "training" | "testing" | "accuracy" | "detection";

export interface Area {
  id: string;
  detector: string;
  image: string;
  kind: AreaKind;
  geometry: Polygon;
  /** The version this copy is: sent back as `If-Match` so a stale tab cannot overwrite a newer edit. */
  updated_at: string;
}

export interface Annotation {
  id: string;
  detector: string;
  image: string;
  detector_class: string;
  geometry: Polygon;
  updated_at: string;
}

export interface TileJson {
  tilejson?: string;
  tiles: string[];
  bounds?: [number, number, number, number];
  minzoom?: number;
  maxzoom?: number;
  tilesize?: number;
  /** Pixels of the neighbouring tiles around each tile (the layer's gutter). */
  buffer?: number;
}

export type RunStatus = "pending" | "running" | "succeeded" | "partial" | "failed" | "cancelled";

export interface ScoreBlock {
  precision?: number;
  recall?: number;
  f1?: number;
  iou?: number;
  n_pred?: number;
  n_true?: number;
  matches?: number;
  count_error?: number;
}

export interface TrainingRun {
  id: string;
  detector: string;
  version: number;
  status: RunStatus;
  error: string;
  progress: {
    step?: number;
    total?: number;
    loss?: number;
    loss_history?: number[];
    /** While a training waits for a GPU machine's training slot: why, in plain words. */
    waiting?: string;
    /** While running: seconds left from the measured step rate, once a few steps are known. */
    seconds_left?: number;
    /** Once trained: what was trained and for how long, in plain words (from the model card). */
    summary?: string;
    seconds?: number;
    stop_reason?: string;
  };
  metrics: {
    score?: number | null;
    note?: string;
    detection_type?: string;
    overall?: ScoreBlock;
    per_class?: Record<string, ScoreBlock>;
    per_area?: ScoreBlock[];
    /** What the detector found in training areas that no outline covers (objects possibly forgotten). */
    unoutlined?: number;
  };
  stats: Record<string, number>;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface FeatureCollection {
  type: "FeatureCollection";
  features: { type: "Feature"; geometry: Polygon; properties: Record<string, unknown> }[];
}

export interface DetectionRun {
  id: string;
  detector: string;
  training_run: string;
  images: string[];
  /** A change detection's second date. */
  second_image?: string | null;
  status: RunStatus;
  error: string;
  progress: { megapixels_total?: number; megapixels_done?: number; megapixels_per_second?: number; seconds_left?: number };
  cells_total: number;
  cells_done: number;
  cells_failed: number;
  failed_cells: { image: string; cell: string; error: string }[];
  objects_count: number;
  created_at: string;
  finished_at: string | null;
}

export interface DetectionCount {
  image_id: string;
  image_name: string;
  area: string;
  class_name: string;
  count: number;
  total_area_m2: number;
}
