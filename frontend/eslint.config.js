// Lint for the web app: ESLint's and typescript-eslint's recommended rules over src/ and tests/.
// `npm test` runs it before `tsc --noEmit` and Vitest; `make test` runs `npm test`.
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  { ignores: ["dist/", "node_modules/"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module" },
  },
);
