// What the workspace's parts share: the detector, its classes, its images and the one open on the map.

import type { Detector, DetectorClass, DetectorImage, ImageInfo } from "../types";

export interface WorkspaceState {
  detector: Detector | null;
  classes: DetectorClass[];
  /** The class new outlines get. */
  activeClassId: string | null;
  attachments: DetectorImage[];
  imageInfo: Map<string, ImageInfo>;
  /** The project's images (those not attached yet can be added). */
  projectImages: ImageInfo[];
  /** The image open on the map. */
  current: ImageInfo | null;
}

export function classColor(state: WorkspaceState, id: string | undefined): string {
  return state.classes.find((c) => c.id === id)?.color ?? "#1C7ED6";
}
