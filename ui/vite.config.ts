import { defineConfig } from "vitest/config";

// Tauri serves the built files from ../ui/dist; `vite` alone serves the UI with the
// fake backend for development and the browser tests.
export default defineConfig({
  clearScreen: false,
  server: { port: 1420, strictPort: true },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true },
  test: { environment: "jsdom", globals: true },
});
