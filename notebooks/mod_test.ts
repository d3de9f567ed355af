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
