import { describe, expect, it } from "vitest";
import { encryptionOptions, previewCsv } from "./schemaPreview";

describe("the upload's schema preview", () => {
  it("infers numeric, categorical and text columns with their ranges", () => {
    const csv = "age,region,note\n" + Array.from({ length: 50 }, (_, k) => `${20 + k},"${k % 2 ? "north" : "south"}",free text ${k}`).join("\n") + "\n";
    expect(previewCsv(csv)).toEqual([
      { name: "age", type: "numeric", min: 20, max: 69, distinct: 50 },
      { name: "region", type: "categorical", min: null, max: null, distinct: 2 },
      { name: "note", type: "text", min: null, max: null, distinct: 50 },
    ]);
  });
  it("turns the settings into the upload's encryption field and public columns", () => {
    const base = { publicValues: false, lo: "", hi: "", buckets: "", sumsOnly: false, groupBy: [] };
    const out = encryptionOptions({
      age: { ...base, type: "numeric", lo: "0", hi: "120", buckets: "18, 30, 65" },
      cost: { ...base, type: "numeric", sumsOnly: true },
      region: { ...base, type: "categorical", publicValues: true, groupBy: ["cost", "region", "gone"] },
      city: { ...base, type: "categorical", groupBy: [] },
      bad: { ...base, type: "numeric", lo: "5", hi: "1" },
    });
    expect(out.encryption).toEqual({ bounds: { age: [0, 120] }, buckets: { age: [18, 30, 65] }, sums_only: ["cost"],
      // Only numeric columns are summed per category; an empty choice declares nothing.
      group_by: { region: ["cost"] },
    });
    expect(out.publicValueColumns).toEqual(["region"]);
    expect(out.problems).toEqual(["bad"]);
  });
});
