// @vitest-environment jsdom
import { act, screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import i18n from "../../i18n";
import { renderPage, server, useMockApi } from "../../test/harness";
import { JobPage } from "./Jobs";

useMockApi();

const JOB = "55555555-5555-5555-5555-555555555555";
const TX = "0x" + "ab".repeat(32);

function job(status: string, extra: Record<string, unknown> = {}) {
  const order = ["requested", "authorised", "computed", "released", "settled"];
  const reached = order.slice(0, order.indexOf(status) + 1);
  return {
    id: JOB,
    status,
    agreement: "a",
    dataset: "d",
    operation: "mean",
    params: { column: "age" },
    purpose: "research",
    epsilon: 0.1,
    chain_job_id: "0x" + "01".repeat(32),
    timestamps: Object.fromEntries(order.map((s) => [s, reached.includes(s) ? "2026-11-27T10:00:00Z" : null])),
    transactions: { record_usage: status === "requested" ? null : { status: "confirmed", tx_hash: TX, block_number: 3, revert_reason: null }, settle: null, refund: null },
    result: null,
    error_bounds: null,
    result_hash: "",
    receipt: null,
    failure: null,
    ...extra,
  };
}

describe("JobPage", () => {
  it("says where an algorithm job ran, and that the sandbox's evidence is SIMULATED", async () => {
    const tee = { tee_type: "sandbox", label: "SIMULATED", measurement: "ab".repeat(32), attestation_hash: "cd".repeat(32), metering: null };
    server.use(http.get("*/api/jobs/:id/", () => HttpResponse.json(job("computed", { operation: "algorithm", tee }))));
    renderPage(<JobPage id={JOB} />);
    const shown = await screen.findByTestId("tee");
    expect(shown.dataset.label).toBe("SIMULATED");
    expect(shown.textContent).toContain("sandbox");
    expect(shown.textContent).toContain("no hardware attestation");
    expect(screen.getByText("ab".repeat(32))).toBeTruthy();
    await act(async () => {
      await i18n.changeLanguage("zh");
    });
    expect(screen.getByTestId("tee").textContent).toContain("SIMULATED");
    expect(screen.getByTestId("tee").textContent).toContain("无硬件证明");
  });

  it("shows no TEE line for an operation on encrypted data", async () => {
    server.use(http.get("*/api/jobs/:id/", () => HttpResponse.json(job("computed", { tee: null }))));
    renderPage(<JobPage id={JOB} />);
    await screen.findByText("computed", { selector: ".status" });
    expect(screen.queryByTestId("tee")).toBeNull();
  });

  it("follows a job through each state to its result with error bars", async () => {
    const states = [job("requested"), job("authorised"), job("computed"), job("settled", { result: { mean: 41.5 }, error_bounds: { mean: 0.7 }, receipt: { job: JOB } })];
    const seen: string[] = [];
    server.use(
      http.get("*/api/jobs/:id/", () => {
        const next = states.length > 1 ? states.shift()! : states[0];
        seen.push(next.status);
        return HttpResponse.json(next);
      }),
    );
    renderPage(<JobPage id={JOB} />);
    await screen.findByText("requested", { selector: ".status" });
    await screen.findByText("authorised", { selector: ".status" }, { timeout: 3000 });
    await screen.findByText("settled", { selector: ".status" }, { timeout: 5000 });
    expect(seen.slice(0, 4)).toEqual(["requested", "authorised", "computed", "settled"]);
    const result = await screen.findByTestId("result");
    expect(result.textContent).toContain("41.5");
    expect(result.textContent).toContain("0.7");
    expect(screen.getByRole("list", { name: "Progress" }).querySelectorAll("li.done")).toHaveLength(5);
    await waitFor(() => expect((screen.getByTestId("shared-receipt") as HTMLTextAreaElement).value).toContain(JOB));
  });

  it("shows a refused job's code in the user's words, in both languages", async () => {
    server.use(http.get("*/api/jobs/:id/", () => HttpResponse.json(job("requested", { status: "rejected", failure: { code: "budget_exhausted", message: "eps" } }))));
    renderPage(<JobPage id={JOB} />);
    const alert = await screen.findByRole("alert");
    expect(alert.dataset.code).toBe("budget_exhausted");
    expect(alert.textContent).toContain("The privacy budget is spent.");
    await act(async () => {
      await i18n.changeLanguage("zh");
    });
    expect(screen.getByRole("alert").textContent).toContain("隐私预算已用完。");
  });
});
