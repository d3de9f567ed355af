"""Regenerate ftfy_cases.json: inputs and ftfy.fix_text outputs (ftfy 6.3.1) for clip/ftfy_test.ts.

    python3 clip/testdata/make_ftfy_cases.py
"""
import json
import os
import random

import ftfy

random.seed(11)
words = ["café", "naïve", "don’t", "“quoted”", "déjà vu", "über", "señor", "Ελληνικά", "русский",
         "中文", "日本語", "😀", "👍🏽", "—", "…", "•", "€5", "½", "°C", "Ōsaka", "Łódź", "Škoda", "ça",
         "à la", "smörgåsbord", "a photo of", "the", "cat", "ß", "æ", "œuvre", "fiancée", "™", "©",
         "±", "×", "µ", "¿qué?", "¡hola!", "İstanbul", "ğ", "ş", "Ç", "\u00a0", "  ", "x", "Zürich",
         "й", "ё", "ą", "ę", "ő", "ű", "é", "ñ", "Ä", "ö", "à", "è"]
pieces = ["a", " ", "\t", "\u3000", "\x1c", "\x85", "\ufeff", "CAT", "İ", "ΑΣ", "e\u0301", "ﬁ", "ǅ",
          "Ｆ", "ｶ", "’", "“", "&amp;", "&lt;", "&gt;", "&ampx", "&#39;", "&#x27;", "&#150;", "&nbsp;",
          "&NTILDE;", "&Eacute;", "&copy", "<b>", "\u200b", "\x00", "\x07", "\x1b[31m", "\u2028",
          "\r\n", "\n", "ŉ", "\ud83d"]
encs = ["windows-1252", "sloppy-windows-1252", "latin-1", "sloppy-windows-1251",
        "sloppy-windows-1250", "iso-8859-2", "macroman", "cp437", "sloppy-windows-1253",
        "sloppy-windows-1254", "sloppy-windows-1257"]


def moji(s, enc):
    return s.encode("utf-8", "surrogatepass").decode(enc, "replace")


cases = []
for i in range(500):
    s = " ".join(random.choice(words) for _ in range(random.randint(1, 6)))
    r = random.random()
    if r < 0.6:
        s = moji(s, random.choice(encs))
        if random.random() < 0.2:
            s = moji(s, random.choice(encs))
        if random.random() < 0.2:
            s = s.replace("\u00a0", " ")
    elif r < 0.8:
        s = " ".join(moji(p, random.choice(encs)) if random.random() < 0.5 else p for p in s.split(" "))
    if random.random() < 0.3:
        s += "".join(random.choice(pieces) for _ in range(random.randint(1, 5)))
    cases.append({"text": s, "fix_text": ftfy.fix_text(s)})
doc = {"made_with": f"ftfy {ftfy.__version__} fix_text (default options)", "cases": cases}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ftfy_cases.json")
json.dump(doc, open(out, "w"), ensure_ascii=True, indent=0)
print(len(cases), sum(c["text"] != c["fix_text"] for c in cases), "changed")
