#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// Compiles every contract in src/ with the pinned solc-js and fixed settings, and writes one
// artifact per contract to artifacts/<Name>.json:
//   { contractName, sourceName, abi, bytecode, deployedBytecode, compiler: { version }, settings }
// Keys are sorted inside the ABI and settings, so the output is byte-for-byte stable.
//
//   node compile.mjs           write artifacts/ (and remove stale ones)
//   node compile.mjs --check   compile in memory; exit 1 naming every artifact that differs
//                              from, is missing in, or is extra in artifacts/
//
// Keep SETTINGS in step with foundry.toml (optimizer, runs, evm_version, bytecode_hash).
import { createRequire } from 'node:module';
import { readdirSync, readFileSync, writeFileSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const solc = require('solc');

const ROOT = dirname(fileURLToPath(import.meta.url));
const SRC = join(ROOT, 'src');
const OUT = join(ROOT, 'artifacts');

const SETTINGS = {
  evmVersion: 'cancun',
  metadata: { bytecodeHash: 'ipfs' },
  optimizer: { enabled: true, runs: 200 },
  viaIR: false,
};

/** Recursively sorts object keys (arrays keep their order). */
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical(value[k])]),
    );
  }
  return value;
}

function compile() {
  const files = readdirSync(SRC)
    .filter((f) => f.endsWith('.sol'))
    .sort();
  if (files.length === 0) throw new Error('no .sol files in src/');
  const sources = {};
  for (const f of files) sources[`src/${f}`] = { content: readFileSync(join(SRC, f), 'utf8') };

  const input = {
    language: 'Solidity',
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: {
        '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
      },
    },
  };
  const findImports = (path) => {
    try {
      return { contents: readFileSync(join(ROOT, path), 'utf8') };
    } catch {
      return { error: `File not found: ${path}` };
    }
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const e of output.errors || []) process.stderr.write(`${e.formattedMessage || e.message}\n`);
  if (errors.length > 0) throw new Error(`compilation failed with ${errors.length} error(s)`);
  if ((output.errors || []).length > 0) {
    throw new Error('compilation produced warnings; fix them so artifacts stay clean');
  }

  const version = solc.version();
  const artifacts = new Map();
  // Only contracts defined in src/ itself (imports from elsewhere are not ours to publish).
  for (const sourceName of Object.keys(output.contracts).sort()) {
    if (!sources[sourceName]) continue;
    for (const contractName of Object.keys(output.contracts[sourceName]).sort()) {
      const c = output.contracts[sourceName][contractName];
      if (artifacts.has(contractName)) {
        throw new Error(`two contracts named ${contractName}; artifact names must be unique`);
      }
      const artifact = {
        contractName,
        sourceName,
        abi: canonical(c.abi),
        bytecode: `0x${c.evm.bytecode.object}`,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
        compiler: { version },
        settings: canonical(SETTINGS),
      };
      artifacts.set(contractName, `${JSON.stringify(artifact, null, 2)}\n`);
    }
  }
  return artifacts;
}

function existing() {
  if (!existsSync(OUT)) return [];
  return readdirSync(OUT)
    .filter((f) => f.endsWith('.json'))
    .sort();
}

function main() {
  const check = process.argv.includes('--check');
  const artifacts = compile();

  if (check) {
    const problems = [];
    for (const [name, text] of artifacts) {
      const path = join(OUT, `${name}.json`);
      if (!existsSync(path)) problems.push(`artifacts/${name}.json is missing`);
      else if (readFileSync(path, 'utf8') !== text) {
        problems.push(`artifacts/${name}.json differs from the sources`);
      }
    }
    for (const f of existing()) {
      if (!artifacts.has(f.slice(0, -'.json'.length))) {
        problems.push(`artifacts/${f} has no contract in src/ (stale)`);
      }
    }
    if (problems.length > 0) {
      for (const p of problems) process.stderr.write(`error: ${p}\n`);
      process.stderr.write('run `node compile.mjs` in registry/contracts and commit artifacts/\n');
      process.exit(1);
    }
    process.stdout.write(`artifacts up to date (${artifacts.size} contracts, solc ${solc.version()})\n`);
    return;
  }

  mkdirSync(OUT, { recursive: true });
  for (const f of existing()) {
    if (!artifacts.has(f.slice(0, -'.json'.length))) rmSync(join(OUT, f));
  }
  for (const [name, text] of artifacts) writeFileSync(join(OUT, `${name}.json`), text);
  process.stdout.write(`wrote ${artifacts.size} artifacts with solc ${solc.version()}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`error: ${err.message}\n`);
  process.exit(1);
}
