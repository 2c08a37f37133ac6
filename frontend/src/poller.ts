// Polling shared by the Train and Detect panels: load the latest state now, then again every `intervalMs` while
// `active()` says something is still queued or running. After a failed load the next one waits longer
// (doubling, up to `maxIntervalMs`); the first load that works goes back to the normal pace. `stop()` (the view
// is left) ends it for good: nothing more is loaded or scheduled.

export interface PollerOptions {
  intervalMs: number;
  /** The longest wait after failures in a row (default: 8 × intervalMs). */
  maxIntervalMs?: number;
  /** Fetch and show the latest state; throws when it could not. */
  load(): Promise<void>;
  /** Whether to poll again after this load (a run is queued or running). */
  active(): boolean;
  /** Told of each failed load (the panels show it as a toast). */
  onError?(error: unknown): void;
}

export class Poller {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private stopped = false;

  constructor(private readonly options: PollerOptions) {}

  /** Loads now, then keeps polling while `active()`. */
  async refresh(): Promise<void> {
    if (this.stopped) return;
    this.clear();
    try {
      await this.options.load();
      this.failures = 0;
    } catch (error) {
      this.failures++;
      if (!this.stopped) this.options.onError?.(error);
    }
    this.schedule();
  }

  /** Polls again after the current wait if `active()` (e.g. right after a run was started). */
  schedule(): void {
    this.clear();
    if (this.stopped || !this.options.active()) return;
    this.timer = setTimeout(() => void this.refresh(), this.delay);
  }

  /** The wait before the next load: `intervalMs`, doubled for each failure in a row. */
  get delay(): number {
    const { intervalMs, maxIntervalMs = intervalMs * 8 } = this.options;
    return Math.min(maxIntervalMs, intervalMs * 2 ** this.failures);
  }

  /** Whether a next load is scheduled. */
  get polling(): boolean {
    return this.timer !== undefined;
  }

  stop(): void {
    this.stopped = true;
    this.clear();
  }

  private clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
