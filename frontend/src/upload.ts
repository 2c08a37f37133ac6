// Large uploads: start (the server creates the image and a signed URL), PUT the bytes with progress, commit.
// A failed PUT can be retried with a renewed URL; the image keeps its id.

import { Api, ApiError, errorFromBody } from "./api";
import type { ImageInfo, UploadTicket } from "./types";

/** What the file picker offers; the server still checks every file's content. */
export const ACCEPTED_EXTENSIONS = [".tif", ".tiff", ".jp2", ".j2k", ".png", ".jpg", ".jpeg"];
/** The server's words for a file it cannot read (imagery/cog.py: NOT_AN_IMAGE), said before sending one. */
export const NOT_AN_IMAGE = "This file is not an image we can read (accepted: GeoTIFF, JPEG 2000, PNG, JPEG)";

/** Whether a file's name has an image extension we accept (a dropped file is not filtered by the picker). */
export function acceptedFileName(name: string): boolean {
  const dot = name.lastIndexOf(".");
  return dot > 0 && ACCEPTED_EXTENSIONS.includes(name.slice(dot).toLowerCase());
}

export type UploadPhase = "starting" | "sending" | "finishing" | "done" | "failed";

export interface UploadState {
  file: File;
  phase: UploadPhase;
  loaded: number;
  total: number;
  image: ImageInfo | null;
  error: string | null;
  /** False when sending the same file again cannot help (it is not an image). */
  retryable: boolean;
}

/** PUT a body with progress events; rejects with an ApiError carrying the server's message. */
export function putWithProgress(
  url: string,
  body: Blob,
  onProgress: (loaded: number, total: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : body.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(body.size, body.size);
        resolve();
        return;
      }
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        parsed = null;
      }
      reject(errorFromBody(xhr.status, parsed));
    };
    xhr.onerror = () => reject(new ApiError(0, "The upload was interrupted. Check your connection and retry."));
    xhr.onabort = () => reject(new ApiError(0, "The upload was cancelled."));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(body);
  });
}

export class Upload {
  state: UploadState;
  private listeners: Array<(state: UploadState) => void> = [];

  constructor(
    private readonly api: Api,
    private readonly projectId: string,
    file: File,
    private readonly put: typeof putWithProgress = putWithProgress,
  ) {
    this.state = { file, phase: "starting", loaded: 0, total: file.size, image: null, error: null, retryable: true };
  }

  onChange(listener: (state: UploadState) => void): void {
    this.listeners.push(listener);
  }

  private set(patch: Partial<UploadState>): void {
    this.state = { ...this.state, ...patch };
    for (const listener of this.listeners) listener(this.state);
  }

  /** Run (or re-run after a failure) until the file is committed; never throws, the error lands in state. */
  async run(): Promise<void> {
    if (!acceptedFileName(this.state.file.name)) {
      this.set({ phase: "failed", error: NOT_AN_IMAGE, retryable: false });
      return;
    }
    try {
      let ticket: UploadTicket;
      if (this.state.image === null) {
        this.set({ phase: "starting", error: null });
        ticket = await this.api.post<UploadTicket>("images/uploads/", {
          project: this.projectId,
          filename: this.state.file.name,
          name: this.state.file.name.replace(/\.[^.]+$/, ""),
        });
      } else {
        this.set({ phase: "starting", error: null, loaded: 0 });
        ticket = await this.api.post<UploadTicket>(`images/${this.state.image.id}/upload-url/`);
      }
      this.set({ image: ticket.image, phase: "sending" });
      await this.put(ticket.upload_url, this.state.file, (loaded, total) => this.set({ loaded, total }));
      this.set({ phase: "finishing" });
      const image = await this.api.post<ImageInfo>(`images/${ticket.image.id}/commit/`);
      this.set({ image, phase: "done" });
    } catch (error) {
      this.set({ phase: "failed", error: error instanceof Error ? error.message : String(error) });
    }
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
