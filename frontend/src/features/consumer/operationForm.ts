// The fields of a computation's form, generated from the operation's declared parameters
// (GET /api/operations/: a JSON Schema object), and the request body built back from them.
import type { Column, Operation, ParameterSpec } from "../../api";

export type FieldKind = "column" | "columns" | "choice" | "json" | "text";

export interface Field {
  name: string;
  kind: FieldKind;
  required: boolean;
  description: string;
  options: string[];
}

const NUMERIC = new Set(["integer", "float", "boolean"]);

function columnsFor(spec: ParameterSpec, columns: Column[]): string[] {
  const description = spec.description ?? "";
  if (/categorical/.test(description)) return columns.filter((c) => c.type === "categorical").map((c) => c.name);
  if (/numeric/.test(description) || spec.type === "array") return columns.filter((c) => NUMERIC.has(c.type)).map((c) => c.name);
  return columns.map((c) => c.name);
}

export function fieldsOf(operation: Operation, columns: Column[]): Field[] {
  const required = new Set(operation.parameters.required ?? []);
  return Object.entries(operation.parameters.properties ?? {}).map(([name, spec]) => {
    const base = { name, required: required.has(name), description: spec.description ?? "" };
    if (spec.enum) return { ...base, kind: "choice", options: spec.enum.map(String) };
    if (spec.type === "array" && spec.items?.type === "string") return { ...base, kind: "columns", options: columnsFor(spec, columns) };
    // An id (the approved algorithm of an `algorithm` job) is typed in, not a column.
    if (spec.type === "string" && spec.format === "uuid") return { ...base, kind: "text", options: [] };
    if (spec.type === "string") return { ...base, kind: "column", options: columnsFor(spec, columns) };
    if (spec.type === "object" || spec.oneOf) return { ...base, kind: "json", options: [] };
    return { ...base, kind: "text", options: [] };
  });
}

export type FormValues = Record<string, string | string[]>;

/** The request's params from the form; a named problem for a field that cannot be sent. */
export function paramsOf(fields: Field[], values: FormValues): { params: Record<string, unknown>; problems: string[] } {
  const params: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const field of fields) {
    const value = values[field.name];
    const empty = value === undefined || (Array.isArray(value) ? value.length === 0 : value.trim() === "");
    if (empty) {
      if (field.required) problems.push(field.name);
      continue;
    }
    if (field.kind === "json") {
      try {
        params[field.name] = JSON.parse(value as string);
      } catch {
        problems.push(field.name);
      }
    } else params[field.name] = value;
  }
  return { params, problems };
}
