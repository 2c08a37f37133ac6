import { defineConfig } from "vitest/config";

// Built assets are served by Django under /static/app/ (STATICFILES_DIRS prefix "app"); the page itself is
// rendered by picterra/frontend_views.py from the manifest. `npm run dev` proxies the API to a local Django.
const backend = process.env.PICTERRA_BACKEND ?? "http://127.0.0.1:8000";

export default defineConfig(({ command }) => ({
  // Built: served by Django under /static/app/. Dev server: open http://localhost:5173/app/.
  base: command === "build" ? "/static/app/" : "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
  },
  server: {
    proxy: Object.fromEntries(["/api", "/accounts", "/blobs", "/tiles", "/static/drf", "/static/picterra", "/favicon.ico"].map((p) => [p, backend])),
  },
  test: {
    environment: "node",
    include: ["tests/**/*.test.ts"],
  },
}));
