#!/usr/bin/env node
// Compiles chargenet's contracts offline with the pinned solc-js and writes the artifacts the
// Python services load (libs/core/chargenet/core/chain/compiled/<Contract>.json), so nothing
// needs Node at run time. Usage: `node contracts/compile.js` (or `npm run compile` in contracts/).
//
// Every artifact records `sourceHash`: sha256 over the compiler version, the raw bytes of
// solc-settings.json and every source (sorted path, NUL, content, NUL). The Python test
// recomputes it from the files without Node and fails when the artifacts are stale.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const HERE = __dirname;
const ROOT = path.resolve(HERE, "..");
const OUT = path.join(ROOT, "libs", "core", "chargenet", "core", "chain", "compiled");
const SOURCE_DIRS = ["src", "baseline"];

function lockedSolcVersion() {
  const lock = JSON.parse(fs.readFileSync(path.join(HERE, "package-lock.json"), "utf8"));
  return lock.packages["node_modules/solc"].version;
}

function collectSources() {
  const sources = {};
  for (const dir of SOURCE_DIRS) {
    for (const name of fs.readdirSync(path.join(HERE, dir)).sort()) {
      if (name.endsWith(".sol")) {
        const rel = `${dir}/${name}`;
        sources[rel] = fs.readFileSync(path.join(HERE, rel), "utf8");
      }
    }
  }
  return sources;
}

function sourceHash(version, settingsBytes, sources) {
  const hash = crypto.createHash("sha256");
  hash.update(`solc ${version}\0`);
  hash.update(settingsBytes);
  hash.update("\0");
  for (const rel of Object.keys(sources).sort()) {
    hash.update(`${rel}\0${sources[rel]}\0`);
  }
  return hash.digest("hex");
}

function main() {
  const version = lockedSolcVersion();
  if (!solc.version().startsWith(`${version}+`)) {
    throw new Error(`installed solc ${solc.version()} differs from the lock (${version}): npm ci`);
  }
  const settingsBytes = fs.readFileSync(path.join(HERE, "solc-settings.json"));
  const settings = JSON.parse(settingsBytes.toString("utf8"));
  const sources = collectSources();
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(
      Object.entries(sources).map(([rel, content]) => [rel, { content }]),
    ),
    settings: {
      ...settings,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "storageLayout"] },
      },
    },
  };
  const started = Date.now();
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors || [];
  for (const problem of problems) {
    process.stderr.write(`${problem.formattedMessage || problem.message}\n`);
  }
  if (problems.some((problem) => problem.severity === "error")) {
    process.exitCode = 1;
    return;
  }
  const digest = sourceHash(version, settingsBytes, sources);
  fs.mkdirSync(OUT, { recursive: true });
  for (const old of fs.readdirSync(OUT)) {
    if (old.endsWith(".json")) fs.unlinkSync(path.join(OUT, old));
  }
  let count = 0;
  for (const [sourceName, contracts] of Object.entries(output.contracts)) {
    for (const [contractName, compiled] of Object.entries(contracts)) {
      const artifact = {
        contractName,
        sourceName,
        compiler: { version: solc.version(), settings },
        sourceHash: digest,
        abi: compiled.abi,
        bytecode: `0x${compiled.evm.bytecode.object}`,
        deployedBytecode: `0x${compiled.evm.deployedBytecode.object}`,
        storageLayout: compiled.storageLayout,
      };
      const file = path.join(OUT, `${contractName}.json`);
      fs.writeFileSync(file, `${JSON.stringify(artifact, null, 1)}\n`);
      count += 1;
    }
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`compiled ${count} contracts with solc ${solc.version()} in ${seconds}s\n`);
}

main();
