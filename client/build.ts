/**
 * @module build
 * Builds the installable SDK (`deno task build:client`): `dist/chat_client.js`, one ES module
 * bundled by `deno bundle`, and the `.d.ts` files TypeScript emits from the same sources. Works
 * offline from the cached npm packages. Usage: `deno run ... client/build.ts [OUT_DIR]`
 * (default `client/dist`, which `client/package.json` publishes).
 */

import ts from "typescript";

const CLIENT = new URL(".", import.meta.url).pathname;
const ENTRY = `${CLIENT}chat_client.ts`;

/** Builds into `outDir`; throws with the tools' output when a step fails. */
export async function buildClient(outDir: string): Promise<void> {
  await Deno.mkdir(outDir, { recursive: true });
  const bundled = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--no-config",
      "--platform",
      "browser",
      "--format",
      "esm",
      "--output",
      `${outDir}/chat_client.js`,
      ENTRY,
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!bundled.success) {
    throw new Error(`deno bundle failed:\n${new TextDecoder().decode(bundled.stderr)}`);
  }
  emitDeclarations(outDir);
}

/** The `.d.ts` files, with `./x.ts` specifiers rewritten to the `./x.js` that `dist/` holds. */
function emitDeclarations(outDir: string): void {
  const options: ts.CompilerOptions = {
    declaration: true,
    emitDeclarationOnly: true,
    allowImportingTsExtensions: true,
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    rootDir: CLIENT,
    outDir,
    types: [],
  };
  const program = ts.createProgram([ENTRY], options);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  const result = program.emit(undefined, (fileName, text) => {
    Deno.writeTextFileSync(
      fileName,
      text.replace(/(from\s+["']\.\/[\w-]+)\.ts(["'])/g, "$1.js$2"),
    );
  });
  const errors = [...diagnostics, ...result.diagnostics];
  if (errors.length > 0) {
    throw new Error(ts.formatDiagnostics(errors, {
      getCanonicalFileName: (name) => name,
      getCurrentDirectory: () => CLIENT,
      getNewLine: () => "\n",
    }));
  }
}

if (import.meta.main) {
  const outDir = Deno.args[0] ?? `${CLIENT}dist`;
  await buildClient(outDir);
  console.log(`built ${outDir}/chat_client.js and its .d.ts files`);
}
