// @vitest-environment jsdom
import { act, fireEvent, screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import i18n from "../../i18n";
import { apiError, renderPage, server, useMockApi } from "../../test/harness";
import { OfferEditor } from "./OfferEditor";

useMockApi();

const DATASET = "33333333-3333-3333-3333-333333333333";
const OFFER = "44444444-4444-4444-4444-444444444444";

function mockCatalogue() {
  server.use(
    http.get("*/api/datasets/", () =>
      HttpResponse.json({
        count: 1,
        next: null,
        previous: null,
        results: [{ id: DATASET, title: "Clinic visits", keywords: [], non_personal: false, profile: { rows_approx: 10, columns: [] } }],
      }),
    ),
    http.get("*/api/operations/", () =>
      HttpResponse.json(["count", "mean", "histogram"].map((name) => ({ name, description: "", depth: 1, parameters: { type: "object", properties: {} }, output: "", precision_significant_digits: 6 }))),
    ),
  );
}

function draft(): { target: string; permission: { constraint: { leftOperand: string; rightOperand: unknown }[]; duty: { constraint: { rightOperand: string }[] }[] }[] } {
  return JSON.parse(screen.getByTestId("odrl").textContent ?? "null");
}

function constraint(leftOperand: string): unknown {
  return draft().permission[0].constraint.find((c) => c.leftOperand === leftOperand)?.rightOperand;
}

describe("OfferEditor", () => {
  it("draws the ODRL document from the form as it is filled in", async () => {
    mockCatalogue();
    renderPage(<OfferEditor datasetId={DATASET} />);
    await screen.findByText("ODRL policy (draft)");
    expect(draft().target).toBe(`urn:redlake:dataset:${DATASET}`);
    fireEvent.change(screen.getByLabelText("Purposes (comma separated)"), { target: { value: "research, public-health" } });
    fireEvent.click(screen.getByRole("checkbox", { name: "histogram" }));
    fireEvent.click(screen.getByRole("checkbox", { name: "mean" }));
    fireEvent.change(screen.getByLabelText("Price per call (tokens)"), { target: { value: "0.25" } });
    fireEvent.change(screen.getByLabelText("Minimum cohort (k)"), { target: { value: "20" } });
    expect(constraint("purpose")).toEqual(["public-health", "research"]);
    expect(constraint("redlake:operation")).toEqual(["count", "histogram"]);
    expect(constraint("redlake:minCohort")).toBe(20);
    expect(draft().permission[0].duty[0].constraint[0].rightOperand).toBe("250000000000000000");
  });

  it("refuses a price that is not an amount", async () => {
    mockCatalogue();
    renderPage(<OfferEditor datasetId={DATASET} />);
    await screen.findByText("ODRL policy (draft)");
    fireEvent.change(screen.getByLabelText("Price per call (tokens)"), { target: { value: "1,5" } });
    expect(screen.getByLabelText("Price per call (tokens)").getAttribute("aria-invalid")).toBe("true");
    expect((screen.getByRole("button", { name: "Publish on chain" }) as HTMLButtonElement).disabled).toBe(true);
  });

  it("publishes the terms exactly and follows the transaction", async () => {
    mockCatalogue();
    let body: Record<string, unknown> = {};
    server.use(
      http.post("*/api/offers/", async ({ request }) => {
        body = (await request.json()) as Record<string, unknown>;
        return HttpResponse.json({ id: OFFER, status: "pending", policy: { uid: "server" }, policy_hash: "0xabc", publish_tx: null, chain_offer_id: null }, { status: 201 });
      }),
      http.get("*/api/offers/:id/", () =>
        HttpResponse.json({
          id: OFFER,
          status: "published",
          policy: { uid: "urn:redlake:offer:7" },
          policy_hash: "0xabc",
          chain_offer_id: 7,
          failure: "",
          publish_tx: { status: "confirmed", tx_hash: "0x" + "12".repeat(32), block_number: 9, revert_reason: null },
        }),
      ),
    );
    renderPage(<OfferEditor datasetId={DATASET} />);
    await screen.findByText("ODRL policy (draft)");
    fireEvent.change(screen.getByLabelText("Price per call (tokens)"), { target: { value: "1000000" } });
    fireEvent.click(screen.getByRole("button", { name: "Publish on chain" }));
    await waitFor(() => expect(screen.getByTestId("offer-status").dataset.status).toBe("published"), { timeout: 5000 });
    expect(body).toMatchObject({ dataset: DATASET, purposes: ["research"], operations: ["count", "mean"], price_per_call: "1000000000000000000000000" });
    expect(screen.getByText("ODRL policy (as published)")).toBeTruthy();
    expect(screen.getByText("#7")).toBeTruthy();
  });

  it("allows submitted algorithms with sandbox execution: the operation, its terms in the ODRL and the request", async () => {
    mockCatalogue();
    let body: Record<string, unknown> = {};
    server.use(
      http.post("*/api/offers/", async ({ request }) => {
        body = (await request.json()) as Record<string, unknown>;
        return HttpResponse.json({ id: OFFER, status: "pending", policy: { uid: "server" }, policy_hash: "0xabc", publish_tx: null, chain_offer_id: null }, { status: 202 });
      }),
      http.get("*/api/offers/:id/", () => HttpResponse.json({ id: OFFER, status: "pending", policy: { uid: "server" }, policy_hash: "0xabc", publish_tx: null, chain_offer_id: null, failure: "" })),
    );
    renderPage(<OfferEditor datasetId={DATASET} />);
    await screen.findByText("ODRL policy (draft)");
    expect(constraint("redlake:allowSandbox")).toBeUndefined(); // no TEE terms without the operation
    expect(screen.queryByLabelText("Accept sandbox execution (SIMULATED: no hardware TEE)")).toBeNull();
    fireEvent.click(screen.getByLabelText("Consumers may submit algorithms for my approval"));
    expect(constraint("redlake:operation")).toEqual(["algorithm", "count", "mean"]);
    expect(constraint("redlake:allowSandbox")).toBe(false);
    fireEvent.click(screen.getByLabelText("Accept sandbox execution (SIMULATED: no hardware TEE)"));
    fireEvent.change(screen.getByLabelText("Compute price per CPU-second (tokens; 0: not metered)"), { target: { value: "0.5" } });
    fireEvent.change(screen.getByLabelText("Most CPU-milliseconds charged per call"), { target: { value: "2000" } });
    fireEvent.change(screen.getByLabelText("Memory limit (MiB)"), { target: { value: "768" } });
    fireEvent.change(screen.getByLabelText("Wall-clock limit (seconds)"), { target: { value: "120" } });
    expect(constraint("redlake:allowSandbox")).toBe(true);
    expect(constraint("redlake:computeRate")).toBe("500000000000000000");
    expect(constraint("redlake:maxCpuMillis")).toBe(2000);
    expect(constraint("redlake:memoryLimitBytes")).toBe(768 * 2 ** 20);
    expect(constraint("redlake:wallSeconds")).toBe(120);
    fireEvent.click(screen.getByRole("button", { name: "Publish on chain" }));
    await waitFor(() => expect(body.operations).toBeDefined());
    expect(body).toMatchObject({
      operations: ["count", "mean", "algorithm"],
      allow_sandbox: true,
      compute_rate: "500000000000000000",
      max_cpu_millis: 2000,
      memory_limit_bytes: 768 * 2 ** 20,
      wall_seconds: 120,
    });
    await act(async () => {
      await i18n.changeLanguage("zh");
    });
    expect(screen.getByText("接受沙箱执行（模拟：无硬件 TEE）")).toBeTruthy();
  });

  it("sends no TEE terms on an offer without algorithms (the server refuses them there)", async () => {
    mockCatalogue();
    let body: Record<string, unknown> = {};
    server.use(
      http.post("*/api/offers/", async ({ request }) => {
        body = (await request.json()) as Record<string, unknown>;
        return HttpResponse.json(apiError("validation_failed").body, { status: 400 });
      }),
    );
    renderPage(<OfferEditor datasetId={DATASET} />);
    await screen.findByText("ODRL policy (draft)");
    fireEvent.click(screen.getByLabelText("Consumers may submit algorithms for my approval"));
    fireEvent.click(screen.getByLabelText("Accept sandbox execution (SIMULATED: no hardware TEE)"));
    fireEvent.click(screen.getByLabelText("Consumers may submit algorithms for my approval"));
    fireEvent.click(screen.getByRole("button", { name: "Publish on chain" }));
    await screen.findByRole("alert");
    expect(body.operations).toEqual(["count", "mean"]);
    expect(Object.keys(body).filter((k) => ["allow_sandbox", "compute_rate", "max_cpu_millis", "memory_limit_bytes", "wall_seconds"].includes(k))).toEqual([]);
  });

  it("names a refusal in the user's words, in both languages", async () => {
    mockCatalogue();
    server.use(http.post("*/api/offers/", () => HttpResponse.json(apiError("dataset_not_on_chain").body, { status: 409 })));
    renderPage(<OfferEditor datasetId={DATASET} />);
    await screen.findByText("ODRL policy (draft)");
    fireEvent.click(screen.getByRole("button", { name: "Publish on chain" }));
    const alert = await screen.findByRole("alert");
    expect(alert.dataset.code).toBe("dataset_not_on_chain");
    expect(alert.textContent).toContain("The dataset is not registered on chain yet.");
    await act(async () => {
      await i18n.changeLanguage("zh");
    });
    expect(screen.getByRole("alert").textContent).toContain("数据集尚未在链上登记。");
    expect(screen.getByRole("alert").textContent).toContain("dataset_not_on_chain");
  });
});
