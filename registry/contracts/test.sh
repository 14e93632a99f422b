#!/usr/bin/env bash
# Builds and tests the Agora contracts, offline. Run from anywhere: registry/contracts/test.sh
#
#   1. npm ci                      pinned solc-js and forge (from package-lock.json)
#   2. node compile.mjs --check    committed artifacts/ match the sources; forge fmt --check
#   3. forge build + compare       forge's bytecode is the artifacts' bytecode, byte for byte
#   4. forge test                  Solidity tests in test/ (GAS_REPORT=1 adds --gas-report)
#   5. forge coverage              every line, branch (so every revert path) and function of
#                                  src/ is exercised; anything under 100% fails
#
# forge gets its compiler from tools/solc (a Standard-JSON shim over solc-js), so nothing is
# downloaded beyond the npm packages. The last line reads "contracts: N passed, M failed".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# --ignore-scripts: forge's postinstall would only download a binary that the
# @foundry-rs/forge-linux-amd64 optional dependency already ships.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
chmod +x tools/solc
forge=(node_modules/.bin/forge)

echo "== artifacts"
node compile.mjs --check

echo "== forge fmt --check"
"${forge[@]}" fmt --check

echo "== forge build"
"${forge[@]}" build --offline
node -e '
  const fs = require("fs");
  let bad = 0;
  for (const f of fs.readdirSync("artifacts")) {
    const name = f.replace(/\.json$/, "");
    const a = JSON.parse(fs.readFileSync(`artifacts/${f}`, "utf8"));
    const b = JSON.parse(fs.readFileSync(`out/${name}.sol/${name}.json`, "utf8"));
    if (a.bytecode !== b.bytecode.object || a.deployedBytecode !== b.deployedBytecode.object) {
      console.error(`error: forge built different bytecode for ${name} than artifacts/${f}`);
      bad = 1;
    }
  }
  process.exit(bad);
'
echo "forge bytecode == artifacts bytecode"

echo "== forge test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
if [ "${GAS_REPORT:-0}" = 1 ]; then
  "${forge[@]}" test --offline --gas-report 2>&1 | tee "$log"
else
  "${forge[@]}" test --offline 2>&1 | tee "$log"
fi
status=${PIPESTATUS[0]}
set -e
summary=$(grep -E 'tests passed, [0-9]+ failed' "$log" | tail -n 1 || true)
passed=$(sed -E 's/.* ([0-9]+) tests passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$summary")
if [ "$status" -ne 0 ] || [ -z "$summary" ]; then
  echo "contracts: ${passed:-0} passed, ${failed:-1} failed"
  exit 1
fi

echo "== forge coverage"
"${forge[@]}" coverage --offline --report summary >"$log" 2>&1 || { cat "$log"; exit 1; }
grep -E '^\| src/' "$log"
if grep -E '^\| src/' "$log" | grep -vqE '^\| src/[^|]+\|( 100\.00% \([0-9]+/[0-9]+\) +\|){4}$'; then
  echo "error: coverage of src/ is below 100% (every revert path must be tested)"
  echo "contracts: $passed passed, 1 failed"
  exit 1
fi

echo "contracts: $passed passed, $failed failed"
