// The app shell: configuration from the page, the header with breadcrumbs and the signed-in user, and a
// small history router for /app/... paths.

import { Api, readCookie } from "./api";
import { BRAND_MARK_SVG, PRODUCT_NAME, pageTitle } from "./brand";
import { clear, h } from "./dom";

export interface Config {
  username: string;
  loginUrl: string;
  logoutUrl: string;
  apiDocsUrl: string;
  isStaff: boolean;
}

export interface Crumb {
  label: string;
  href?: string;
}

export interface AppContext {
  api: Api;
  config: Config;
  navigate(path: string, replace?: boolean): void;
  setCrumbs(crumbs: Crumb[]): void;
  setTitle(title: string): void;
}

export type Cleanup = () => void;
export type ViewFn = (root: HTMLElement, ctx: AppContext, params: Record<string, string>) => Cleanup | void;

export interface Route {
  pattern: RegExp;
  view: ViewFn;
  /** Full-window views (the map) hide the page chrome's margins. */
  fullWindow?: boolean;
}

export const BASE = "/app/";

function brandMark(): HTMLElement {
  const mark = h("span", { class: "brand-mark", "aria-hidden": "true" });
  mark.innerHTML = BRAND_MARK_SVG;
  return mark;
}

export function readConfig(): Config {
  const el = document.getElementById("app-config");
  const data = el?.textContent ? (JSON.parse(el.textContent) as Partial<Config>) : {};
  return {
    username: data.username ?? "",
    loginUrl: data.loginUrl ?? "/accounts/login/",
    logoutUrl: data.logoutUrl ?? "/accounts/logout/",
    apiDocsUrl: data.apiDocsUrl ?? "/api/docs/",
    isStaff: data.isStaff ?? false,
  };
}

export function matchRoute(routes: Route[], path: string): { route: Route; params: Record<string, string> } | null {
  for (const route of routes) {
    const match = route.pattern.exec(path);
    if (match) return { route, params: { ...(match.groups ?? {}) } };
  }
  return null;
}

export function startApp(routes: Route[], notFound: ViewFn): void {
  const config = readConfig();
  const api = new Api();
  api.onSignInNeeded = () => {
    window.location.href = `${config.loginUrl}?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
  };

  const crumbsEl = h("nav", { class: "crumbs", "aria-label": "Breadcrumbs" });
  const signOut = h(
    "form",
    { method: "post", action: config.logoutUrl, class: "signout" },
    h("input", { type: "hidden", name: "csrfmiddlewaretoken", value: readCookie(document.cookie, "csrftoken") ?? "" }),
    h("button", { type: "submit", class: "btn btn-ghost btn-small" }, "Sign out"),
  );
  const header = h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: BASE, "data-link": "" }, brandMark(), PRODUCT_NAME),
    crumbsEl,
    h(
      "div",
      { class: "topbar-right" },
      h("a", { class: "topbar-link", href: config.apiDocsUrl, target: "_blank", rel: "noopener" }, "API"),
      h("a", { class: "topbar-link", href: `${BASE}api-keys`, "data-link": "", "data-testid": "api-keys-link" }, "API keys"),
      config.isStaff ? h("a", { class: "topbar-link", href: "/admin/" }, "Admin") : null,
      h("span", { class: "user", title: "Signed in" }, h("span", { class: "avatar" }, (config.username[0] ?? "?").toUpperCase()), config.username),
      signOut,
    ),
  );
  const main = h("main", { id: "view" });
  const root = document.getElementById("app")!;
  clear(root);
  root.append(header, main);

  let cleanup: Cleanup | void;
  const ctx: AppContext = {
    api,
    config,
    navigate(path, replace = false) {
      if (replace) history.replaceState(null, "", path);
      else history.pushState(null, "", path);
      render();
    },
    setCrumbs(crumbs) {
      clear(crumbsEl);
      crumbs.forEach((crumb, i) => {
        if (i > 0) crumbsEl.append(h("span", { class: "crumb-sep" }, "/"));
        crumbsEl.append(
          crumb.href ? h("a", { href: crumb.href, "data-link": "" }, crumb.label) : h("span", { class: "crumb-current" }, crumb.label),
        );
      });
    },
    setTitle(title) {
      document.title = pageTitle(title);
    },
  };

  function render(): void {
    if (typeof cleanup === "function") cleanup();
    cleanup = undefined;
    clear(main);
    ctx.setCrumbs([]);
    const found = matchRoute(routes, window.location.pathname);
    document.body.classList.toggle("full-window", Boolean(found?.route.fullWindow));
    cleanup = found ? found.route.view(main, ctx, found.params) : notFound(main, ctx, {});
  }

  document.addEventListener("click", (event) => {
    const link = (event.target as Element).closest?.("a[data-link]") as HTMLAnchorElement | null;
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    ctx.navigate(link.pathname + link.search);
  });
  window.addEventListener("popstate", render);
  render();
}
