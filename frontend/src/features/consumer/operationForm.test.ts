import { describe, expect, it } from "vitest";
import type { Column, Operation } from "../../api";
import { fieldsOf, paramsOf } from "./operationForm";

const columns: Column[] = [
  { name: "age", type: "integer", null_fraction: 0 },
  { name: "region", type: "categorical", null_fraction: 0, cardinality: 2 },
  { name: "cost", type: "float", null_fraction: 0 },
];
const groupBy: Operation = {
  name: "group_by",
  engine: "he",
  description: "",
  depth: 1,
  output: "",
  precision_significant_digits: 6,
  parameters: {
    type: "object",
    properties: {
      by: { type: "string", description: "categorical column" },
      aggregate: { enum: ["count", "sum", "mean"] },
      column: { type: "string", description: "numeric column (not for count)" },
      where: { type: "object", description: "optional filter" },
    },
    required: ["by", "aggregate"],
  },
};
const regression: Operation = {
  ...groupBy,
  name: "linear_regression",
  parameters: { type: "object", properties: { target: { type: "string", description: "complete numeric column" }, features: { type: "array", items: { type: "string" } } }, required: ["target", "features"] },
};

describe("the operation form", () => {
  it("offers the columns each parameter can take", () => {
    const fields = fieldsOf(groupBy, columns);
    expect(fields.map((f) => [f.name, f.kind, f.required, f.options])).toEqual([
      ["by", "column", true, ["region"]],
      ["aggregate", "choice", true, ["count", "sum", "mean"]],
      ["column", "column", false, ["age", "cost"]],
      ["where", "json", false, []],
    ]);
    expect(fieldsOf(regression, columns)[1]).toMatchObject({ kind: "columns", options: ["age", "cost"] });
  });
  it("builds the params and names what is missing or malformed", () => {
    const fields = fieldsOf(groupBy, columns);
    expect(paramsOf(fields, { by: "region", aggregate: "mean", column: "cost", where: "" })).toEqual({
      params: { by: "region", aggregate: "mean", column: "cost" },
      problems: [],
    });
    expect(paramsOf(fields, { by: "", aggregate: "mean", where: '{"column": ' }).problems).toEqual(["by", "where"]);
    expect(paramsOf(fields, { by: "region", aggregate: "count", where: '{"column": "region", "equals": "north"}' }).params).toEqual({
      by: "region",
      aggregate: "count",
      where: { column: "region", equals: "north" },
    });
  });
  it("asks for an algorithm job's algorithm id and its own params as JSON", () => {
    const algorithm: Operation = {
      ...groupBy,
      name: "algorithm",
      engine: "tee",
      depth: null,
      precision_significant_digits: null,
      parameters: {
        type: "object",
        properties: {
          algorithm: { type: "string", format: "uuid", description: "id of an algorithm approved for the agreement's offer" },
          params: { type: "object", description: "the algorithm's own parameters" },
        },
        required: ["algorithm"],
      },
    };
    const fields = fieldsOf(algorithm, columns);
    expect(fields.map((f) => [f.name, f.kind, f.required])).toEqual([
      ["algorithm", "text", true],
      ["params", "json", false],
    ]);
    const id = "6f1c1b8e-1d2f-4c4e-9a51-0f2d3f6b8a10";
    expect(paramsOf(fields, { algorithm: id, params: '{"c": 1}' }).params).toEqual({ algorithm: id, params: { c: 1 } });
  });
});
