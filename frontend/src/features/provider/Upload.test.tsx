// @vitest-environment jsdom
import { act, fireEvent, screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import i18n from "../../i18n";
import { apiError, renderPage, server, useMockApi } from "../../test/harness";
import { Upload } from "./Upload";

useMockApi();

const CSV = "age,city\n30,Paris\n40,Rome\n50,Paris\n60,Rome\n";

async function chooseFile(text = CSV) {
  const input = screen.getByLabelText("File (CSV or Parquet)");
  await act(async () => {
    fireEvent.change(input, { target: { files: [new File([text], "people.csv", { type: "text/csv" })] } });
  });
  await screen.findByText("Inferred schema");
}

describe("Upload", () => {
  it("shows the inferred schema with the sample's bounds", async () => {
    renderPage(<Upload />);
    await chooseFile();
    expect((screen.getByLabelText("Lower bound of age") as HTMLInputElement).value).toBe("30");
    expect((screen.getByLabelText("Upper bound of age") as HTMLInputElement).value).toBe("60");
    expect((screen.getByLabelText("Lower bound of city") as HTMLInputElement).disabled).toBe(true);
    expect((screen.getByLabelText("Values of city public") as HTMLInputElement).disabled).toBe(false);
  });

  it("refuses bounds in the wrong order before anything is sent", async () => {
    renderPage(<Upload />);
    await chooseFile();
    fireEvent.change(screen.getByLabelText("Lower bound of age"), { target: { value: "99" } });
    expect(screen.getByRole("alert").textContent).toContain("Check the bounds or edges of: age");
    expect((screen.getByRole("button", { name: "Upload" }) as HTMLButtonElement).disabled).toBe(true);
  });

  it("sends the schema settings and follows the ingest to its dataset", async () => {
    let sent: FormData | null = null;
    let polls = 0;
    server.use(
      http.post("*/api/datasets/", async ({ request }) => {
        sent = await request.formData();
        return HttpResponse.json({ id: "11111111-1111-1111-1111-111111111111", status: "pending", progress: 0 }, { status: 202 });
      }),
      http.get("*/api/ingests/:id/", () => {
        polls += 1;
        return HttpResponse.json(
          polls < 2
            ? { id: "11111111-1111-1111-1111-111111111111", status: "running", progress: 40, dataset: null, error: null }
            : { id: "11111111-1111-1111-1111-111111111111", status: "succeeded", progress: 100, dataset: "22222222-2222-2222-2222-222222222222", error: null },
        );
      }),
    );
    renderPage(<Upload />);
    await chooseFile();
    fireEvent.click(screen.getByLabelText("Values of city public"));
    const groupBy = screen.getByLabelText("Group-by sums of city") as HTMLSelectElement;
    (groupBy.querySelector("option[value='age']") as HTMLOptionElement).selected = true;
    fireEvent.change(groupBy);
    expect(screen.queryByLabelText("Group-by sums of age")).toBeNull(); // numbers are grouped, not grouped by
    fireEvent.submit(screen.getByRole("button", { name: "Upload" }).closest("form")!);
    await waitFor(() => expect(screen.getByTestId("ingest").dataset.status).toBe("succeeded"), { timeout: 5000 });
    expect(screen.getByText("Open the dataset").getAttribute("href")).toContain("22222222-2222-2222-2222-222222222222");
    const form = sent as unknown as FormData;
    expect(form.get("title")).toBe("people");
    expect(form.getAll("public_value_columns")).toEqual(["city"]);
    expect(JSON.parse(String(form.get("encryption")))).toMatchObject({ bounds: { age: [30, 60] }, group_by: { city: ["age"] } });
    expect(form.get("file")).toBeTruthy();
  });

  it("lets the provider correct an inferred type and sends only the correction", async () => {
    let sent: FormData | null = null;
    server.use(
      http.post("*/api/datasets/", async ({ request }) => {
        sent = await request.formData();
        return HttpResponse.json(apiError("unsupported_column_type").body, { status: 400 });
      }),
    );
    renderPage(<Upload />);
    await chooseFile();
    fireEvent.change(screen.getByLabelText("Type of age"), { target: { value: "categorical" } });
    expect((screen.getByLabelText("Lower bound of age") as HTMLInputElement).disabled).toBe(true);
    expect((screen.getByLabelText("Values of age public") as HTMLInputElement).disabled).toBe(false);
    fireEvent.submit(screen.getByRole("button", { name: "Upload" }).closest("form")!);
    expect((await screen.findByRole("alert")).dataset.code).toBe("unsupported_column_type");
    const form = sent as unknown as FormData;
    expect(JSON.parse(String(form.get("column_types")))).toEqual({ age: "categorical" });
    expect(JSON.parse(String(form.get("encryption"))).bounds).toEqual({});
  });

  it("shows the server's error code in the user's words, in both languages", async () => {
    server.use(http.post("*/api/datasets/", () => HttpResponse.json(apiError("ragged_rows").body, { status: 400 })));
    renderPage(<Upload />);
    await chooseFile();
    fireEvent.submit(screen.getByRole("button", { name: "Upload" }).closest("form")!);
    const alert = await screen.findByRole("alert");
    expect(alert.dataset.code).toBe("ragged_rows");
    expect(alert.textContent).toContain("Some rows have a different number of fields than the header.");
    await act(async () => {
      await i18n.changeLanguage("zh");
    });
    expect(screen.getByRole("alert").textContent).toContain("部分行的字段数与表头不一致。");
    expect(screen.getByRole("alert").textContent).toContain("ragged_rows");
  });
});
