// Undo/redo of saved edits. Commands are asynchronous (each one talks to the server); while one runs,
// further undo/redo requests are refused rather than interleaved, and a command that fails stays where it
// was so the user can try again.

export interface Command {
  label: string;
  undo(): Promise<void> | void;
  redo(): Promise<void> | void;
}

export class UndoStack {
  private done: Command[] = [];
  private undone: Command[] = [];
  private running = false;
  private listeners: Array<() => void> = [];

  constructor(private readonly limit = 200) {}

  get canUndo(): boolean {
    return !this.running && this.done.length > 0;
  }

  get canRedo(): boolean {
    return !this.running && this.undone.length > 0;
  }

  get busy(): boolean {
    return this.running;
  }

  /** The label of what undo would revert, e.g. "draw outline". */
  get undoLabel(): string | null {
    return this.done.at(-1)?.label ?? null;
  }

  get redoLabel(): string | null {
    return this.undone.at(-1)?.label ?? null;
  }

  /** Record an edit that has already been applied. */
  push(command: Command): void {
    this.done.push(command);
    if (this.done.length > this.limit) this.done.shift();
    this.undone = [];
    this.emit();
  }

  async undo(): Promise<boolean> {
    return this.step(this.done, this.undone, "undo");
  }

  async redo(): Promise<boolean> {
    return this.step(this.undone, this.done, "redo");
  }

  clear(): void {
    this.done = [];
    this.undone = [];
    this.emit();
  }

  onChange(listener: () => void): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  private async step(from: Command[], to: Command[], action: "undo" | "redo"): Promise<boolean> {
    if (this.running || from.length === 0) return false;
    const command = from.pop()!;
    this.running = true;
    this.emit();
    try {
      await command[action]();
      to.push(command);
      return true;
    } catch (error) {
      from.push(command);
      throw error;
    } finally {
      this.running = false;
      this.emit();
    }
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}
