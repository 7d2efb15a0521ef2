import { describe, expect, it } from "vitest";
// @ts-expect-error a plain .mjs helper shared with the command line
import { sourceKeys } from "../scripts/i18n-keys.mjs";
import zh from "./locales/zh.json";
import en from "./locales/en.json";
import { ERROR_TEXTS } from "./i18n";

const STATES = ["pending", "published", "failed", "succeeded", "confirmed", "active", "requested", "authorised", "computed", "released", "settled", "withheld", "rejected", "refunded"];
const CHECKS = ["parsed", "job", "commitment", "chain_result", "attestation", "signature", "merkle"].map((c) => `check.${c}`);

describe("translations", () => {
  it("has Chinese for every sentence the portal shows", () => {
    const wanted = [...(sourceKeys("src") as Set<string>), ...ERROR_TEXTS, ...STATES, ...CHECKS];
    expect(wanted.filter((k) => !(k in zh))).toEqual([]);
  });
  it("has English for every key that is not itself English", () => {
    expect(CHECKS.filter((k) => !(k in en))).toEqual([]);
  });
  it("keeps the placeholders in each translation", () => {
    const broken = Object.entries(zh as Record<string, string>).filter(([k, v]) => {
      const names = (s: string) => [...s.matchAll(/{{(\w+)}}/g)].map((m) => m[1]).sort().join();
      return names(k) !== names(v);
    });
    expect(broken).toEqual([]);
  });
});
