#!/usr/bin/env node
// forge talks to "solc" with `--version` and `--standard-json`; this answers both with the npm
// solc package (the compiler as wasm), so builds need no download. Imports resolve against the
// working directory and every --base-path / --include-path / --allow-paths forge passes.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require(path.join(__dirname, "..", "node_modules", "solc"));

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version().replace("Emscripten.clang", "Linux.g++")}\n`);
  process.exit(0);
}
const roots = [process.cwd()];
for (let i = 0; i < args.length; i++) {
  if (["--base-path", "--include-path", "--allow-paths"].includes(args[i]) && args[i + 1]) {
    roots.push(...args[i + 1].split(","));
  }
}
function findImports(importPath) {
  for (const root of [...roots, ""]) {
    const candidate = path.resolve(root, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  }
  return { error: `File not found: ${importPath}` };
}
const input = fs.readFileSync(0, "utf8");
process.stdout.write(solc.compile(input, { import: findImports }));
