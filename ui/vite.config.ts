import { defineConfig } from "vitest/config";

// Tauri serves the built files from ../ui/dist, which hold no fake backend: main.ts
// imports it only in `vite` (development) and in `vite build --mode fake`
// (ui/dist-fake, for the browser tests), and the production build drops that branch.
export default defineConfig({
  clearScreen: false,
  server: { port: 1420, strictPort: true },
  build: { target: "es2022", emptyOutDir: true },
  test: { environment: "jsdom", globals: true },
});
