import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  fixCharacterWidth,
  fixEncoding,
  fixLatinLigatures,
  fixText,
  ftfyUnescapeHtml,
  htmlUnescape,
  isBad,
  uncurlQuotes,
} from "./ftfy.ts";

Deno.test("fixText: identical to ftfy 6.3.1 fix_text on 500 mojibake / entity / control cases", async () => {
  const doc = JSON.parse(
    await Deno.readTextFile(new URL("./testdata/ftfy_cases.json", import.meta.url)),
  );
  assert(doc.cases.length >= 500);
  let changed = 0;
  for (const c of doc.cases) {
    assertEquals(fixText(c.text), c.fix_text, JSON.stringify(c.text));
    if (c.text !== c.fix_text) changed++;
  }
  assert(changed > 300, `only ${changed} cases exercise a fix`);
});

Deno.test("htmlUnescape: Python html.unescape rules", () => {
  assertEquals(htmlUnescape("&amp;amp; &lt;&GT; &#39;&#x27; &copy &ampx"), "&amp; <> '' © &x");
  assertEquals(
    htmlUnescape("&#150; &#0; &#x110000; &#1; &bogus;"),
    "\u2013 \ufffd \ufffd  &bogus;",
  );
  assertEquals(htmlUnescape("&notit; &notin;"), "¬it; ∉");
});

Deno.test("ftfy steps: entities with ';' only, ligatures, width, quotes, mojibake", () => {
  assertEquals(ftfyUnescapeHtml("&amp; &copy &NTILDE; &#x2019;"), "& &copy Ñ \u2019");
  assertEquals(fixLatinLigatures("ﬁne ﬂow ǅ"), "fine flow Dž");
  assertEquals(fixCharacterWidth("ＦＵＬＬ\u3000ｶ"), "FULL \u30ab");
  assertEquals(uncurlQuotes("“a” ‘b’ ʼc"), `"a" 'b' 'c`);
  assertEquals(fixEncoding("cafÃ© donâ€™t"), "café don’t");
  assert(isBad("Ã©") && !isBad("café"));
  // "<" turns entity decoding off from that line on, as ftfy's "auto" mode.
  assertEquals(fixText("&amp;\n<b>&amp;</b>"), "&\n<b>&amp;</b>");
});
