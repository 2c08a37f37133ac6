// The organisation's projects: cards with counts, and a form to start a new one.

import type { Page } from "../api";
import type { AppContext } from "../app";
import { BASE } from "../app";
import { clear, errorMessage, h, icon, timeAgo, toast } from "../dom";
import type { Detector, ImageInfo, Organization, Project } from "../types";

export function projectsView(root: HTMLElement, ctx: AppContext): () => void {
  ctx.setTitle("Projects");
  ctx.setCrumbs([{ label: "Projects" }]);
  let alive = true;

  const list = h("div", { class: "card-grid", "data-testid": "project-list" }, h("div", { class: "skeleton-card" }), h("div", { class: "skeleton-card" }));
  const formHost = h("div");
  root.append(
    h(
      "div",
      { class: "page" },
      h(
        "div",
        { class: "page-head" },
        h("div", null, h("h1", null, "Projects"), h("p", { class: "lead" }, "A project holds your images and the detectors that learn to find objects in them.")),
        h("button", { class: "btn btn-primary", "data-testid": "new-project", onclick: () => showForm() }, icon("plus"), "New project"),
      ),
      formHost,
      list,
    ),
  );

  let organizations: Organization[] = [];

  function showForm(): void {
    clear(formHost);
    const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "e.g. Vineyards 2026", autocomplete: "off" });
    const description = h("input", { name: "description", placeholder: "What is it for? (optional)", autocomplete: "off" });
    const org = h("select", { name: "organization" }, ...organizations.map((o) => h("option", { value: o.id }, o.name)));
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      {
        class: "panel inline-form",
        onsubmit: async (event: Event) => {
          event.preventDefault();
          error.textContent = "";
          try {
            const project = await ctx.api.post<Project>("projects/", {
              organization: org.value,
              name: name.value.trim(),
              description: description.value.trim(),
            });
            ctx.navigate(`${BASE}projects/${project.id}`);
          } catch (e) {
            error.textContent = errorMessage(e);
          }
        },
      },
      h("label", null, "Name", name),
      h("label", null, "Description", description),
      organizations.length > 1 ? h("label", null, "Organisation", org) : null,
      h("div", { class: "form-actions" }, h("button", { class: "btn btn-primary", type: "submit" }, "Create project"), h("button", { class: "btn", type: "button", onclick: () => clear(formHost) }, "Cancel")),
      error,
    );
    if (organizations.length <= 1) form.append(h("input", { type: "hidden", value: org.value }));
    formHost.append(form);
    name.focus();
  }

  async function load(): Promise<void> {
    try {
      const [orgs, projects] = await Promise.all([
        ctx.api.list<Organization>("organizations/"),
        ctx.api.list<Project>("projects/", { ordering: "-created_at" }),
      ]);
      if (!alive) return;
      organizations = orgs;
      clear(list);
      if (!projects.length) {
        list.append(
          h(
            "div",
            { class: "empty-state panel" },
            icon("image", 40),
            h("h2", null, "No project yet"),
            h("p", null, "Create a project, upload an aerial or drone image, and teach a detector to find objects in it."),
            h("button", { class: "btn btn-primary", onclick: () => showForm() }, icon("plus"), "Create your first project"),
          ),
        );
        return;
      }
      const orgName = new Map(orgs.map((o) => [o.id, o.name]));
      for (const project of projects) {
        const counts = h("div", { class: "card-meta" }, "…");
        list.append(
          h(
            "a",
            { class: "card project-card", href: `${BASE}projects/${project.id}`, "data-link": "", "data-testid": "project-card" },
            h("div", { class: "card-icon" }, icon("layers", 22)),
            h("h3", null, project.name),
            h("p", { class: "muted" }, project.description || (orgs.length > 1 ? orgName.get(project.organization) ?? "" : "")),
            counts,
            h("div", { class: "card-foot" }, `Created ${timeAgo(project.created_at)}`),
          ),
        );
        Promise.all([
          ctx.api.get<Page<ImageInfo>>("images/", { project: project.id }),
          ctx.api.get<Page<Detector>>("detectors/", { project: project.id }),
        ])
          .then(([images, detectors]) => {
            counts.textContent = `${images.count} image${images.count === 1 ? "" : "s"} · ${detectors.count} detector${detectors.count === 1 ? "" : "s"}`;
          })
          .catch(() => (counts.textContent = ""));
      }
    } catch (e) {
      clear(list);
      list.append(h("div", { class: "panel error-panel" }, errorMessage(e)));
      toast(errorMessage(e), "error");
    }
  }

  load();
  return () => {
    alive = false;
  };
}
