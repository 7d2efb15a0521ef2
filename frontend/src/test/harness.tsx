// Component tests render a page with the portal's real providers (TanStack Query, i18n) against
// a mocked REST API: msw answers the requests the typed client and the upload's XMLHttpRequest
// make, so the tests see exactly the requests the page sends.
import type { ReactElement } from "react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, render } from "@testing-library/react";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll } from "vitest";
import i18n from "../i18n";

export const server = setupServer();

// jsdom's Blob lacks text(), which every browser the portal supports has (the upload's preview
// reads the file's first bytes with it); FileReader gives the same answer.
if (typeof Blob !== "undefined" && !Blob.prototype.text) {
  Blob.prototype.text = function text(this: Blob): Promise<string> {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(reader.error);
      reader.readAsText(this);
    });
  };
}

/** Starts the mock API for this file; any request without a handler fails the test. */
export function useMockApi(): void {
  beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
  afterEach(async () => {
    cleanup();
    server.resetHandlers();
    await i18n.changeLanguage("en");
  });
  afterAll(() => server.close());
}

export function renderPage(page: ReactElement) {
  const queries = new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } });
  return render(<QueryClientProvider client={queries}>{page}</QueryClientProvider>);
}

export function apiError(code: string, message = "server's own words", status = 400) {
  return { status, body: { error: { code, message, details: null } } };
}
