#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Minimal `solc` command-line stand-in backed by solc-js (npm package `solc`), so that
// py-solc-x can drive it via `solc_binary=`. It understands only what py-solc-x's
// `compile_standard` sends:
//
//   solc-wrapper.js --version
//   solc-wrapper.js --standard-json [--base-path DIR] [--allow-paths A,B]
//                   [--include-path DIR] [--output-dir DIR] [--overwrite]  < input.json
//
// Imports are resolved from the base path / include paths (only files under the base,
// include or allowed paths are readable). Install with `npm ci --prefix contracts`.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

let solc;
try {
  solc = require("solc");
} catch (err) {
  process.stderr.write(
    "solc-js is not installed; run `npm ci --prefix contracts`\n" + String(err) + "\n",
  );
  process.exit(2);
}

const args = process.argv.slice(2);
const valueFlags = new Set(["--base-path", "--allow-paths", "--include-path", "--output-dir"]);
const boolFlags = new Set(["--standard-json", "--version", "--overwrite", "--pretty-json"]);
const opts = {};
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (boolFlags.has(arg)) {
    opts[arg] = true;
  } else if (valueFlags.has(arg)) {
    if (i + 1 >= args.length) {
      process.stderr.write(`Invalid option to ${arg}: missing value\n`);
      process.exit(1);
    }
    opts[arg] = (opts[arg] || []).concat(args[++i].split(",").filter((p) => p.length > 0));
  } else if (arg === "-") {
    // "read from stdin": the default for --standard-json anyway
  } else {
    process.stderr.write(`unrecognised option '${arg}'\n`);
    process.exit(1);
  }
}

if (opts["--version"]) {
  process.stdout.write(
    "solc, the solidity compiler commandline interface\nVersion: " + solc.version() + "\n",
  );
  process.exit(0);
}

if (!opts["--standard-json"]) {
  process.stderr.write("only --version and --standard-json are supported\n");
  process.exit(1);
}

const roots = (opts["--base-path"] || []).concat(opts["--include-path"] || []);
const allowed = roots.concat(opts["--allow-paths"] || []).map((p) => path.resolve(p));

function isAllowed(file) {
  return allowed.some((dir) => file === dir || file.startsWith(dir + path.sep));
}

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath)
    ? [importPath]
    : (roots.length > 0 ? roots : ["."]).map((root) => path.resolve(root, importPath));
  for (const file of candidates) {
    const resolved = path.resolve(file);
    if (allowed.length > 0 && !isAllowed(resolved)) continue;
    if (fs.existsSync(resolved)) {
      return { contents: fs.readFileSync(resolved, "utf8") };
    }
  }
  return { error: `File not found or not allowed: ${importPath}` };
}

const input = fs.readFileSync(0, "utf8");
const output = solc.compile(input, { import: findImports });

if (opts["--output-dir"]) {
  const dir = opts["--output-dir"][0];
  const file = path.join(dir, "combined.json");
  if (fs.existsSync(file) && !opts["--overwrite"]) {
    process.stderr.write(`Refusing to overwrite ${file}; pass --overwrite\n`);
    process.exit(1);
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(file, output);
}
process.stdout.write(output + "\n");
