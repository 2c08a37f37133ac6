// The signed-in user's API keys for scripts and the official `picterra` client: create one (shown once,
// with a copy button and how to use it), see when each was last used, revoke it.

import type { AppContext } from "../app";
import { clear, confirmDialog, errorMessage, h, icon, timeAgo, toast } from "../dom";
import type { Organization } from "../types";

export interface ApiKeyInfo {
  id: string;
  name: string;
  organization: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
}

export function apiKeysView(root: HTMLElement, ctx: AppContext): () => void {
  ctx.setTitle("API keys");
  ctx.setCrumbs([{ label: "API keys" }]);
  let alive = true;
  let organizations: Organization[] = [];

  const issued = h("div", { "data-testid": "issued-key" });
  const rows = h("tbody");
  const table = h(
    "table",
    { class: "data-table", "data-testid": "api-key-list" },
    h("thead", null, h("tr", null, h("th", null, "Name"), h("th", null, "Key"), h("th", null, "Organisation"), h("th", null, "Created"), h("th", null, "Last used"), h("th", null, ""))),
    rows,
  );
  const empty = h("p", { class: "muted", hidden: true }, "No API key yet.");
  const name = h("input", { name: "name", maxlength: 100, placeholder: "e.g. nightly export script", autocomplete: "off", required: true });
  const org = h("select", { name: "organization" });
  const error = h("p", { class: "form-error", role: "alert" });
  // a key belongs to an organisation: creating one waits until the organisations are listed
  const create = h("button", { class: "btn btn-primary", type: "submit", "data-testid": "create-key", disabled: true }, icon("plus"), "Create key");
  const form = h(
    "form",
    {
      class: "panel inline-form",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          const key = await ctx.api.post<ApiKeyInfo & { key: string }>("api-keys/", { name: name.value.trim(), organization: org.value });
          name.value = "";
          showIssued(key);
          await load();
        } catch (e) {
          error.textContent = errorMessage(e);
        }
      },
    },
    h("label", null, "Name", name),
    h("label", { class: "org-field" }, "Organisation", org),
    h("div", { class: "form-actions" }, create),
    error,
  );

  root.append(
    h(
      "div",
      { class: "page" },
      h(
        "div",
        { class: "page-head" },
        h(
          "div",
          null,
          h("h1", null, "API keys"),
          h("p", { class: "lead" }, "Keys let scripts and the official picterra Python client work with your projects. Treat a key like a password."),
        ),
      ),
      issued,
      form,
      h("div", { class: "panel" }, table, empty),
    ),
  );

  function showIssued(key: ApiKeyInfo & { key: string }): void {
    clear(issued);
    const value = h("input", { class: "key-value", readonly: true, value: key.key, "data-testid": "issued-key-value", onfocus: (e: Event) => (e.target as HTMLInputElement).select() });
    issued.append(
      h(
        "div",
        { class: "panel notice-panel" },
        h("h2", null, icon("check"), ` Key “${key.name}” created`),
        h("p", null, "Copy it now: it is shown only once. We store only a fingerprint of it."),
        h(
          "div",
          { class: "key-row" },
          value,
          h(
            "button",
            {
              class: "btn",
              type: "button",
              onclick: async () => {
                try {
                  await navigator.clipboard.writeText(key.key);
                  toast("Key copied", "success");
                } catch {
                  value.select();
                  toast("Press Ctrl+C to copy the selected key");
                }
              },
            },
            "Copy",
          ),
        ),
        h(
          "p",
          { class: "muted" },
          "Use it as ",
          h("code", null, "PICTERRA_API_KEY"),
          " with the official client (and ",
          h("code", null, `PICTERRA_BASE_URL=${window.location.origin}/public/api/v2/`),
          "), or send it as the ",
          h("code", null, "X-Api-Key"),
          " header.",
        ),
      ),
    );
  }

  async function revoke(key: ApiKeyInfo): Promise<void> {
    const ok = await confirmDialog("Revoke this key?", `Scripts using “${key.name}” (${key.prefix}…) will stop working at once.`, "Revoke");
    if (!ok) return;
    try {
      await ctx.api.delete(`api-keys/${key.id}/`);
      toast("Key revoked", "success");
      await load();
    } catch (e) {
      toast(errorMessage(e), "error");
    }
  }

  async function load(): Promise<void> {
    try {
      const [orgs, keys] = await Promise.all([ctx.api.list<Organization>("organizations/"), ctx.api.list<ApiKeyInfo>("api-keys/")]);
      if (!alive) return;
      if (!organizations.length) {
        organizations = orgs;
        clear(org);
        org.append(...orgs.map((o) => h("option", { value: o.id }, o.name)));
        (form.querySelector(".org-field") as HTMLElement).hidden = orgs.length <= 1;
        create.disabled = orgs.length === 0;
      }
      const orgName = new Map(orgs.map((o) => [o.id, o.name]));
      clear(rows);
      empty.hidden = keys.length > 0;
      table.hidden = keys.length === 0;
      for (const key of keys) {
        rows.append(
          h(
            "tr",
            { "data-testid": "api-key-row" },
            h("td", null, key.name || "—"),
            h("td", null, h("code", null, `${key.prefix}…`)),
            h("td", null, orgName.get(key.organization) ?? ""),
            h("td", null, timeAgo(key.created_at)),
            h("td", null, key.last_used_at ? timeAgo(key.last_used_at) : "never"),
            h("td", null, h("button", { class: "btn btn-small btn-danger", type: "button", "data-testid": "revoke-key", onclick: () => revoke(key) }, "Revoke")),
          ),
        );
      }
    } catch (e) {
      toast(errorMessage(e), "error");
    }
  }

  load();
  return () => {
    alive = false;
  };
}
