import "ol/ol.css";
import "./styles.css";

import { BASE, startApp } from "./app";
import { h } from "./dom";
import { apiKeysView } from "./views/apikeys";
import { projectView } from "./views/project";
import { projectsView } from "./views/projects";
import { workspaceView } from "./views/workspace";

const UUID = "[0-9a-fA-F-]{36}";

startApp(
  [
    { pattern: new RegExp(`^${BASE}?$`), view: projectsView },
    { pattern: new RegExp(`^${BASE}projects/(?<id>${UUID})/?$`), view: projectView },
    { pattern: new RegExp(`^${BASE}api-keys/?$`), view: apiKeysView },
    { pattern: new RegExp(`^${BASE}detectors/(?<id>${UUID})/?$`), view: workspaceView, fullWindow: true },
  ],
  (root, ctx) => {
    ctx.setTitle("Not found");
    root.append(
      h(
        "div",
        { class: "page empty-state" },
        h("h1", null, "This page does not exist"),
        h("p", null, h("a", { href: BASE, "data-link": "" }, "Back to your projects")),
      ),
    );
  },
);
