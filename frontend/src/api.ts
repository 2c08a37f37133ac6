// The REST client: JSON in and out, the session's CSRF token on unsafe methods, paginated lists followed to
// the end, and every failure turned into an ApiError whose `message` is fit to show a person.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export class ApiError extends Error {
  readonly status: number;
  readonly errors: unknown;

  constructor(status: number, message: string, errors: unknown = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.errors = errors;
  }

  /** The signed-in session ended (or never began): the page should send the user to sign in. */
  get needsSignIn(): boolean {
    return this.status === 401 || (this.status === 403 && /credentials were not provided/i.test(this.message));
  }
}

const FALLBACK: Record<number, string> = {
  0: "Could not reach the server. Check your connection and try again.",
  400: "The server could not accept this request.",
  401: "Please sign in again.",
  403: "You are not allowed to do this.",
  404: "This item no longer exists, or you cannot see it.",
  405: "This action is not available here.",
  409: "This conflicts with a change made elsewhere. Reload the page and try again.",
  412: "This was changed elsewhere (another tab or another person) since you loaded it.",
  413: "The file is too large.",
  429: "Too many requests: wait a moment and try again.",
};

/** The first human-readable message in a DRF-style `errors` value (`{field: ["msg"]}`, `["msg"]`, `"msg"`). */
export function firstMessage(errors: unknown, field?: string): string | null {
  if (typeof errors === "string") {
    return field && field !== "non_field_errors" && field !== "detail" ? `${field}: ${errors}` : errors;
  }
  if (Array.isArray(errors)) {
    for (const item of errors) {
      const message = firstMessage(item, field);
      if (message) return message;
    }
    return null;
  }
  if (errors && typeof errors === "object") {
    for (const [key, value] of Object.entries(errors as Record<string, unknown>)) {
      const message = firstMessage(value, field ?? key);
      if (message) return message;
    }
  }
  return null;
}

/** A readable message for a failed response; never the body itself when it is HTML (a debug or proxy page). */
export function errorFromBody(status: number, body: unknown): ApiError {
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const record = body as Record<string, unknown>;
    const detail = typeof record.detail === "string" && record.detail.trim() ? record.detail : null;
    const errors = "errors" in record ? record.errors : record;
    const message = detail ?? firstMessage(errors);
    if (message) return new ApiError(status, message, errors);
  }
  const fallback =
    FALLBACK[status] ??
    (status >= 500
      ? `The server ran into a problem (error ${status}). Try again in a moment.`
      : `The request failed (error ${status}).`);
  return new ApiError(status, fallback, null);
}

export function readCookie(cookies: string, name: string): string | null {
  for (const part of cookies.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export interface ApiOptions {
  base?: string;
  fetch?: typeof fetch;
  csrfToken?: () => string | null;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class Api {
  readonly base: string;
  private readonly fetchImpl: typeof fetch;
  private readonly csrfToken: () => string | null;
  /** Called once per failure that means the session is gone. */
  onSignInNeeded: (() => void) | null = null;

  constructor(options: ApiOptions = {}) {
    this.base = options.base ?? "/api/v1/";
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.csrfToken =
      options.csrfToken ?? (() => (typeof document === "undefined" ? null : readCookie(document.cookie, "csrftoken")));
  }

  url(path: string, params?: Record<string, string | number | undefined>): string {
    const absolute = /^https?:\/\//.test(path) || path.startsWith("/");
    let url = absolute ? path : this.base + path.replace(/^\/+/, "");
    const query = Object.entries(params ?? {}).filter(([, v]) => v !== undefined && v !== "");
    if (query.length) {
      url += (url.includes("?") ? "&" : "?") + query.map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join("&");
    }
    return url;
  }

  async request<T>(method: string, path: string, body?: unknown, extraHeaders?: Record<string, string>): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json", ...extraHeaders };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (UNSAFE.has(method)) {
      const token = this.csrfToken();
      if (token) headers["X-CSRFToken"] = token;
    }
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path), {
        method,
        headers,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, FALLBACK[0]);
    }
    const text = await response.text().catch(() => "");
    let parsed: unknown = null;
    const isJson = (response.headers.get("Content-Type") ?? "").includes("json");
    if (text && isJson) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (!response.ok) {
      const error = errorFromBody(response.status, parsed);
      if (error.needsSignIn) this.onSignInNeeded?.();
      throw error;
    }
    return parsed as T;
  }

  get<T>(path: string, params?: Record<string, string | number | undefined>): Promise<T> {
    return this.request<T>("GET", this.url(path, params));
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>("POST", path, body);
  }

  /** `headers` carries e.g. `If-Match`, so a stale tab's edit is refused (412) instead of overwriting. */
  patch<T>(path: string, body: unknown, headers?: Record<string, string>): Promise<T> {
    return this.request<T>("PATCH", path, body, headers);
  }

  delete(path: string): Promise<void> {
    return this.request<void>("DELETE", path);
  }

  /** Every item of a paginated list, following `next` links (bounded, in case a server loops). */
  async list<T>(path: string, params?: Record<string, string | number | undefined>, maxPages = 200): Promise<T[]> {
    const items: T[] = [];
    let next: string | null = this.url(path, params);
    for (let page = 0; next && page < maxPages; page++) {
      const data: Page<T> | T[] = await this.request<Page<T> | T[]>("GET", next);
      if (Array.isArray(data)) return data;
      items.push(...data.results);
      next = data.next;
    }
    return items;
  }
}
