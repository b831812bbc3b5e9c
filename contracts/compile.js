#!/usr/bin/env node
// Compile CommunityLedger.sol with the pinned npm solc (standard JSON) into
// artifacts/CommunityLedger.json, the only thing the app reads.
//
//   node contracts/compile.js          write the artifact
//   node contracts/compile.js --check  exit 1 if the committed artifact is stale
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const HERE = __dirname;
const SOURCE = "CommunityLedger.sol";
const CONTRACT = "CommunityLedger";
const ARTIFACT = path.join(HERE, "artifacts", `${CONTRACT}.json`);

// py-evm (the in-process EVM) does not run solc's newer default target.
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 10000 },
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function build() {
  const content = fs.readFileSync(path.join(HERE, SOURCE), "utf8");
  const input = { language: "Solidity", sources: { [SOURCE]: { content } }, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length) process.exit(2);
  const compiled = output.contracts[SOURCE][CONTRACT];
  const artifact = {
    contractName: CONTRACT,
    sourceName: SOURCE,
    compiler: { name: "solc (npm)", version: solc.version(), settings: SETTINGS },
    abi: compiled.abi,
    bytecode: "0x" + compiled.evm.bytecode.object,
    deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
  };
  return JSON.stringify(artifact, null, 2) + "\n";
}

const fresh = build();
if (process.argv.includes("--check")) {
  const committed = fs.existsSync(ARTIFACT) ? fs.readFileSync(ARTIFACT, "utf8") : "";
  if (committed !== fresh) {
    process.stderr.write(`${path.relative(process.cwd(), ARTIFACT)} is stale: run node contracts/compile.js\n`);
    process.exit(1);
  }
  process.stdout.write("artifact up to date\n");
} else {
  fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
  fs.writeFileSync(ARTIFACT, fresh);
  process.stdout.write(`wrote ${path.relative(process.cwd(), ARTIFACT)}\n`);
}
