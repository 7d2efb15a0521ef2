// @vitest-environment jsdom
import { act, fireEvent, screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import i18n from "../../i18n";
import { renderPage, server, useMockApi } from "../../test/harness";
import { ProviderDashboard } from "./Dashboard";

useMockApi();

const EMPTY = { count: 0, next: null, previous: null, results: [] };
const ADDRESS = "0x" + "11".repeat(20);

function mockDashboard(algorithmStatus: string, balance: () => string) {
  server.use(
    http.get("*/api/datasets/", () => HttpResponse.json(EMPTY)),
    http.get("*/api/ingests/", () => HttpResponse.json(EMPTY)),
    http.get("*/api/offers/", () => HttpResponse.json(EMPTY)),
    http.get("*/api/agreements/", () => HttpResponse.json(EMPTY)),
    http.get("*/api/audit/jobs/", () => HttpResponse.json(EMPTY)),
    http.get("*/api/earnings/", () => HttpResponse.json({ address: ADDRESS, withdrawable: balance() })),
    http.get("*/api/algorithms/", () =>
      HttpResponse.json({
        count: 1,
        next: null,
        previous: null,
        results: [
          {
            id: "66666666-6666-6666-6666-666666666666",
            url: "/api/algorithms/66666666-6666-6666-6666-666666666666/",
            offer: "o",
            consumer: "cons",
            name: "mean age",
            kind: "python",
            bundle: { source: "def run(tables, params):\n    return {}\n" },
            bundle_sha256: "ab".repeat(32),
            measurement: "cd".repeat(32),
            status: algorithmStatus,
            reason: "",
            approve_tx: null,
            revoke_tx: null,
            created_at: "2026-11-27T10:00:00Z",
            decided_at: null,
          },
        ],
      }),
    ),
  );
}

describe("ProviderDashboard", () => {
  it("alerts to an algorithm awaiting approval and links to the approval page, in both languages", async () => {
    mockDashboard("pending", () => "0");
    renderPage(<ProviderDashboard />);
    const alert = await screen.findByTestId("algorithm-alert");
    expect(alert.textContent).toBe("1 algorithm(s) await your approval");
    expect(alert.querySelector("a")?.getAttribute("href")).toBe("#/provider/algorithms");
    await act(async () => {
      await i18n.changeLanguage("zh");
    });
    expect(screen.getByTestId("algorithm-alert").textContent).toBe("1 个算法等待您的批准");
  });

  it("raises no alert once the algorithm is decided", async () => {
    mockDashboard("approved", () => "0");
    renderPage(<ProviderDashboard />);
    await screen.findByTestId("withdrawable");
    await screen.findByText("No jobs yet.");
    expect(screen.queryByTestId("algorithm-alert")).toBeNull();
  });

  it("withdraws the earnings and reads the balance again until the chain shows it paid", async () => {
    let balance = "2500000000000000000";
    let posted = 0;
    mockDashboard("approved", () => balance);
    server.use(
      http.post("*/api/earnings/", () => {
        posted += 1;
        setTimeout(() => (balance = "0"), 200); // the withdrawal mined a little later
        return HttpResponse.json({ id: 1, withdraw_tx: { status: "pending", tx_hash: null, block_number: null, revert_reason: null } }, { status: 202 });
      }),
    );
    renderPage(<ProviderDashboard />);
    await waitFor(() => expect(screen.getByTestId("withdrawable").textContent).toBe("2.5"));
    fireEvent.click(screen.getByRole("button", { name: "Withdraw" }));
    await screen.findByRole("status");
    await waitFor(() => expect(screen.getByTestId("withdrawable").textContent).toBe("0"), { timeout: 5000 });
    expect(posted).toBe(1);
    expect((screen.getByRole("button", { name: "Withdraw" }) as HTMLButtonElement).disabled).toBe(true);
  });
});
