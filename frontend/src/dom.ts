// A tiny element builder and the app's shared bits of UI (toasts, confirmation, icons).

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
    } else if (key === "class") {
      el.className = String(value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (key in el && !key.includes("-") && typeof value !== "string") {
      (el as unknown as Record<string, unknown>)[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}

/** Inline SVG icons (stroke-based, 20px), bundled with the app. */
const ICONS: Record<string, string> = {
  select: '<path d="M5 3l11 6-5 1.5L9 16z"/>',
  rect: '<rect x="3.5" y="5" width="13" height="10" rx="1"/>',
  polygon: '<path d="M4 8l5-4.5 7 3-1.5 8.5H6z"/>',
  circle: '<circle cx="10" cy="10" r="6.5"/>',
  freehand: '<path d="M3 13c2-5 4-7 6-5s-1 6 2 6 3-6 6-8"/>',
  undo: '<path d="M7 5L3 9l4 4"/><path d="M3 9h9a5 5 0 010 10h-2"/>',
  redo: '<path d="M13 5l4 4-4 4"/><path d="M17 9H8a5 5 0 000 10h2"/>',
  trash: '<path d="M4 6h12M8 6V4h4v2M6 6l1 11h6l1-11"/>',
  magnet: '<path d="M5 4v6a5 5 0 0010 0V4"/><path d="M5 7h3M12 7h3"/>',
  help: '<circle cx="10" cy="10" r="7.5"/><path d="M8 8a2 2 0 113 1.7c-.7.4-1 .9-1 1.6"/><circle cx="10" cy="14" r=".5"/>',
  upload: '<path d="M10 13V3M6 7l4-4 4 4"/><path d="M4 13v3h12v-3"/>',
  back: '<path d="M12 4l-6 6 6 6"/>',
  plus: '<path d="M10 4v12M4 10h12"/>',
  check: '<path d="M4 10l4 4 8-8"/>',
  warn: '<path d="M10 3l8 14H2z"/><path d="M10 8v4"/><circle cx="10" cy="14.5" r=".5"/>',
  layers: '<path d="M10 3l7 4-7 4-7-4z"/><path d="M3 11l7 4 7-4"/>',
  image: '<rect x="3" y="4" width="14" height="12" rx="1.5"/><path d="M3 13l4-4 4 4 2-2 4 4"/>',
  target: '<circle cx="10" cy="10" r="6.5"/><circle cx="10" cy="10" r="2.5"/>',
  play: '<path d="M6 4l10 6-10 6z"/>',
  zoom: '<circle cx="9" cy="9" r="5"/><path d="M13 13l4 4"/>',
  fit: '<path d="M3 7V3h4M13 3h4v4M17 13v4h-4M7 17H3v-4"/><rect x="7" y="7" width="6" height="6" rx=".5"/>',
};

export function icon(name: keyof typeof ICONS | string, size = 18): SVGSVGElement {
  const wrapper = document.createElement("span");
  wrapper.innerHTML = `<svg class="icon" width="${size}" height="${size}" viewBox="0 0 20 20" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${ICONS[name] ?? ""}</svg>`;
  return wrapper.firstElementChild as SVGSVGElement;
}

let toastHost: HTMLElement | null = null;

export function toast(message: string, kind: "info" | "error" | "success" = "info", timeoutMs = 6000): HTMLElement {
  if (!toastHost || !toastHost.isConnected) {
    toastHost = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(toastHost);
  }
  const close = h("button", { class: "toast-close", "aria-label": "Dismiss", onclick: () => el.remove() }, "×");
  const el = h("div", { class: `toast toast-${kind}`, "data-kind": kind }, h("span", null, message), close);
  toastHost.append(el);
  if (timeoutMs > 0) setTimeout(() => el.remove(), timeoutMs);
  return el;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function confirmDialog(title: string, text: string, action = "Delete"): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      backdrop.remove();
      resolve(value);
    };
    const backdrop = h(
      "div",
      { class: "modal-backdrop", onclick: (e: Event) => e.target === backdrop && done(false) },
      h(
        "div",
        { class: "modal", role: "dialog", "aria-modal": "true", "aria-label": title },
        h("h2", null, title),
        h("p", null, text),
        h(
          "div",
          { class: "modal-actions" },
          h("button", { class: "btn", onclick: () => done(false) }, "Cancel"),
          h("button", { class: "btn btn-danger", onclick: () => done(true) }, action),
        ),
      ),
    );
    document.body.append(backdrop);
    (backdrop.querySelector(".btn-danger") as HTMLElement).focus();
  });
}

export function timeAgo(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  const minutes = seconds / 60;
  if (minutes < 60) return `${Math.floor(minutes)} min ago`;
  const hours = minutes / 60;
  if (hours < 24) return `${Math.floor(hours)} h ago`;
  const days = Math.floor(hours / 24);
  return days === 1 ? "yesterday" : `${days} days ago`;
}
