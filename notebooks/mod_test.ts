import { strictEqual } from "node:assert/strict";
import { base64, pngImgTag, svgBundle } from "./mod.ts";

Deno.test("notebook helpers: base64 and tags", () => {
  strictEqual(base64(new TextEncoder().encode("hello")), "aGVsbG8=");
  strictEqual(base64(new Uint8Array(70000)).length, Math.ceil(70000 / 3) * 4);
  strictEqual(svgBundle("<svg/>")["image/svg+xml"], "<svg/>");
  strictEqual(
    pngImgTag(new Uint8Array([1]), { title: 'a"b' }),
    '<img src="data:image/png;base64,AQ==" title="a&quot;b"/>',
  );
});

Deno.test("notebooks use only the package's entry points: no argv, no console patching", async () => {
  const root = new URL("../", import.meta.url);
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const exported = new Set(
    Object.values(config.exports as Record<string, string>).map((p) => new URL(p, root).href),
  );
  const dir = new URL("./", import.meta.url);
  let checked = 0;
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".ipynb")) continue;
    const nb = JSON.parse(await Deno.readTextFile(new URL(e.name, dir)));
    const code = (nb.cells as { cell_type: string; source: string[] | string }[])
      .filter((c) => c.cell_type === "code")
      .map((c) => Array.isArray(c.source) ? c.source.join("") : c.source)
      .join("\n");
    for (const m of code.matchAll(/from\s+"([^"]+)"/g)) {
      const spec = m[1];
      if (!spec.startsWith(".")) continue; // npm:/jsr: packages are not the project's files
      const url = new URL(spec, dir).href;
      strictEqual(
        exported.has(url),
        true,
        `${e.name} imports ${spec}, which deno.json does not export`,
      );
    }
    strictEqual(/parse\w*Args\s*\(/.test(code), false, `${e.name} builds argv`);
    strictEqual(/console\.(log|error)\s*=/.test(code), false, `${e.name} patches the console`);
    strictEqual(/\.match\(\/.*trainable/.test(code), false, `${e.name} parses log output`);
    checked++;
  }
  strictEqual(checked, 3, "three notebooks checked");
});
