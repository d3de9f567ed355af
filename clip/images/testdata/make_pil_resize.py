"""Regenerate pil_resize.json (PIL reference outputs for clip/image_test.ts).

Run with a Python that has Pillow and numpy: python3 clip/testdata/make_pil_resize.py
"""
import numpy as np, json, random, base64, io, PIL
from PIL import Image
random.seed(7); rng = np.random.default_rng(7)
def smooth(h, w, c):
    base = rng.integers(0, 256, size=(max(2,h//5), max(2,w//5), c), dtype=np.uint8)
    im = Image.fromarray(base.squeeze() if c == 1 else base).resize((w, h), Image.BILINEAR)
    a = np.asarray(im).reshape(h, w, c).astype(np.int16) + rng.integers(-30, 30, size=(h, w, c))
    return np.clip(a, 0, 255).astype(np.uint8)
cases = []
for mode in ["RGB", "L", "RGBA", "LA", "P", "1"]:
    for k in range(2):
        w = random.randint(5, 48); h = random.randint(5, 48)
        if mode == "L" or mode == "1": im = Image.fromarray(smooth(h, w, 1)[:, :, 0])
        elif mode == "LA": im = Image.fromarray(smooth(h, w, 2), "LA")
        elif mode == "RGBA": im = Image.fromarray(smooth(h, w, 4))
        else: im = Image.fromarray(smooth(h, w, 3))
        if mode == "1": im = im.convert("1")
        if mode == "P": im = im.quantize(32)
        buf = io.BytesIO(); im.save(buf, "PNG"); png = buf.getvalue()
        im = Image.open(io.BytesIO(png)); assert im.mode == mode
        n = random.choice([7, 16, 32])
        W, H = im.size
        ow, oh = (n, int(n * H / W)) if W <= H else (int(n * W / H), n)
        r = im.resize((ow, oh), Image.BICUBIC)
        top = int(round((oh - n) / 2.0)); left = int(round((ow - n) / 2.0))
        pre = np.asarray(r.crop((left, top, left + n, top + n)).convert("RGB")).tobytes()
        x0 = random.uniform(0, W/2); y0 = random.uniform(0, H/2); x1 = random.uniform(x0+1, W); y1 = random.uniform(y0+1, H)
        bw, bh = random.randint(1, 24), random.randint(1, 24)
        boxed = np.asarray(im.resize((bw, bh), Image.BICUBIC, box=(x0, y0, x1, y1)).convert("RGB")).tobytes()
        cases.append(dict(mode=mode, width=W, height=H, png=base64.b64encode(png).decode(), n_px=n, center=base64.b64encode(pre).decode(),
                          box=[x0, y0, x1, y1], box_size=[bw, bh], boxed=base64.b64encode(boxed).decode()))
doc = {"made_with": f"Pillow {PIL.__version__}: Image.open(png).resize(size, BICUBIC[, box]) (+ torchvision Resize/CenterCrop arithmetic), convert('RGB'); bytes base64, HWC uint8", "cases": cases}
json.dump(doc, open(__file__.replace("make_pil_resize.py", "pil_resize.json"), "w"), indent=0)
