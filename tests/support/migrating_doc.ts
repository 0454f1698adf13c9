/**
 * @module migrating_doc
 * Code blocks of docs/migrating.md, read by the tests that run them, so that the guide and what
 * is tested cannot drift apart.
 */

const DOC = new URL("../../docs/migrating.md", import.meta.url);

/** The one fenced block of `language` whose text contains `marker`; throws if not exactly one. */
export async function docBlock(language: string, marker: string): Promise<string> {
  const text = await Deno.readTextFile(DOC);
  const blocks = [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)]
    .filter((m) => m[1] === language && m[2]!.includes(marker))
    .map((m) => m[2]!);
  if (blocks.length !== 1) {
    throw new Error(`docs/migrating.md has ${blocks.length} \`${language}\` blocks with ${marker}`);
  }
  return blocks[0]!;
}

/** Runs `php` on `script` (a whole file's text); returns stdout, throws with stderr on failure. */
export async function runPhp(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "gb-php-" });
  try {
    const file = `${dir}/script.php`;
    await Deno.writeTextFile(file, script);
    const out = await new Deno.Command("php", {
      args: ["-d", "display_errors=stderr", file, ...args],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
