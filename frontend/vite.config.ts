import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// Built into dist/ and collected by Django as static files under /static/app/ (whitenoise);
// Django serves index.html itself at /app/ (dataspace/portal/spa.py).
export default defineConfig({
  base: "/static/app/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 600,
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
  },
});
