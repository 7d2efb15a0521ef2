// @vitest-environment jsdom
import { fireEvent, screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import { renderPage, server, useMockApi } from "../../test/harness";
import { Algorithms } from "./Algorithms";

useMockApi();

const ALGORITHM = {
  id: "66666666-6666-6666-6666-666666666666",
  url: "/api/algorithms/66666666-6666-6666-6666-666666666666/",
  offer: "o",
  consumer: "cons",
  name: "median age",
  kind: "python",
  bundle: { source: "def run(tables, params):\n    return {}\n" },
  bundle_sha256: "ab".repeat(32),
  measurement: "cd".repeat(32),
  reason: "",
  approve_tx: null,
  revoke_tx: null,
  created_at: "2026-11-27T10:00:00Z",
  decided_at: null,
};

describe("Algorithms", () => {
  it("shows the code, measurement and who asked, and approves", async () => {
    let status = "pending";
    let approved = 0;
    server.use(
      http.get("*/api/algorithms/", () => HttpResponse.json({ count: 1, next: null, previous: null, results: [{ ...ALGORITHM, status }] })),
      http.post("*/api/algorithms/:id/approve/", () => {
        approved += 1;
        status = "approved";
        return HttpResponse.json({ ...ALGORITHM, status: "approving" }, { status: 202 });
      }),
    );
    renderPage(<Algorithms />);
    const card = await screen.findByTestId("algorithm");
    expect(card.textContent).toContain("cons");
    expect(card.textContent).toContain("cd".repeat(32));
    expect(card.textContent).toContain("def run(tables, params):");
    fireEvent.click(screen.getByRole("button", { name: "Approve" }));
    await waitFor(() => expect(screen.getByTestId("algorithm").dataset.status).toBe("approved"));
    expect(approved).toBe(1);
    expect(screen.getByRole("button", { name: "Revoke" })).toBeTruthy();
  });
});
