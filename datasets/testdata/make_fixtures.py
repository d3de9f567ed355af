"""Generate the small MATLAB .mat fixtures of datasets/mat_test.ts with scipy.

Run from the repository root:  python3 datasets/testdata/make_fixtures.py
Writes datasets/testdata/*.mat and prints a JSON summary of the expected values.
"""
import json
import os

import numpy as np
import scipy.io as sio

OUT = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(OUT, name)


# Flowers-102 style: labels 1..102 as a 1xN double row; split ids as 1xN double rows.
labels = (np.arange(10) % 3 + 1).astype(np.float64).reshape(1, -1)
sio.savemat(path("imagelabels.mat"), {"labels": labels})
sio.savemat(
    path("setid.mat"),
    {
        "trnid": np.array([[1, 4, 7]], dtype=np.float64),
        "valid": np.array([[2, 5, 8]], dtype=np.uint16),
        "tstid": np.array([[3, 6, 9, 10]], dtype=np.uint8),
    },
    do_compression=True,
)

# Stanford Cars devkit style: class_names is a 1xC cell of char; annotations a 1xN struct.
names = np.empty((1, 3), dtype=object)
names[0, 0] = "AM General Hummer SUV 2000"
names[0, 1] = "Acura RL Sedan 2012"
names[0, 2] = "smart fortwo Convertible 2012"
sio.savemat(path("cars_meta.mat"), {"class_names": names})

ann = np.zeros(
    (1, 4),
    dtype=[
        ("bbox_x1", "O"),
        ("bbox_y1", "O"),
        ("bbox_x2", "O"),
        ("bbox_y2", "O"),
        ("class", "O"),
        ("fname", "O"),
    ],
)
rows = [
    (39, 116, 569, 375, 3, "00001.jpg"),
    (36, 116, 868, 587, 1, "00002.jpg"),
    (85, 109, 601, 381, 2, "00003.jpg"),
    (621, 393, 1484, 1096, 3, "00004.jpg"),
]
for i, (x1, y1, x2, y2, c, f) in enumerate(rows):
    ann[0, i] = (
        np.array([[x1]], dtype=np.uint8 if x1 < 256 else np.uint16),
        np.array([[y1]], dtype=np.uint16),
        np.array([[x2]], dtype=np.uint16),
        np.array([[y2]], dtype=np.uint16),
        np.array([[c]], dtype=np.uint8),
        np.array([f]),
    )
sio.savemat(path("cars_annos.mat"), {"annotations": ann}, do_compression=True)

# A mix: 2x3 double matrix, logical, int32 negative, 2-row char, nested cell, scalar struct.
cell = np.empty((1, 2), dtype=object)
cell[0, 0] = "abc"
inner = np.empty((1, 1), dtype=object)
inner[0, 0] = np.array([[1.5, -2.5]])
cell[0, 1] = inner
sio.savemat(
    path("mixed.mat"),
    {
        "m": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64),
        "flag": np.array([[True, False]]),
        "neg": np.array([[-5, 7]], dtype=np.int32),
        "rows": np.array(["ab", "cd"]),
        "cell": cell,
        "s": {"a": np.array([[42.0]]), "b": "hi"},
        "unicode": np.array(["héllo"]),
    },
)

# CIFAR python pickles (protocol 2, as torchvision reads them with encoding="latin1"): one image
# per batch; pixel (r, g, b) of image k at (y, x) = ((k*31 + y*7 + x) % 256, (k*17 + y) % 256, x*8 % 256).
import pickle


def cifar_image(k):
    y, x = np.mgrid[0:32, 0:32]
    r = (k * 31 + y * 7 + x) % 256
    g = (k * 17 + y) % 256 + 0 * x
    b = (x * 8) % 256 + 0 * y
    return np.concatenate([r.ravel(), g.ravel(), b.ravel()]).astype(np.uint8)


c10 = os.path.join(OUT, "cifar-10-batches-py")
os.makedirs(c10, exist_ok=True)
for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]):
    with open(os.path.join(c10, name), "wb") as f:
        pickle.dump({"batch_label": name, "labels": [i % 10], "data": cifar_image(i)[None, :], "filenames": [f"img{i}.png"]}, f, protocol=2)
with open(os.path.join(c10, "batches.meta"), "wb") as f:
    pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"], "num_cases_per_batch": 1, "num_vis": 3072}, f, protocol=2)
c100 = os.path.join(OUT, "cifar-100-python")
os.makedirs(c100, exist_ok=True)
for i, name in enumerate(["train", "test"]):
    with open(os.path.join(c100, name), "wb") as f:
        pickle.dump({"fine_labels": [41 + i, 99], "coarse_labels": [0, 1], "data": np.stack([cifar_image(10 + i), cifar_image(20 + i)])}, f, protocol=2)
fine = [f"class_{j}" for j in range(100)]
fine[41] = "lawn_mower"
with open(os.path.join(c100, "meta"), "wb") as f:
    pickle.dump({"fine_label_names": fine, "coarse_label_names": ["a", "b"]}, f, protocol=2)

# A CIFAR batch in the exact Python 2 cPickle form of the real files: py2 `str` keys
# (SHORT_BINSTRING) and the numpy raw data as a py2 `str` (BINSTRING), which Python 3 only reads
# with encoding="latin1". Written opcode by opcode; Python 3 cannot emit this form itself.
import struct


def sbs(s):
    b = s.encode("latin1")
    return b"U" + bytes([len(b)]) + b


row = bytes((i * 7) % 256 for i in range(3072))
p2 = b"\x80\x02}q\x01(" + sbs("data")
p2 += b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85" + sbs("b") + b"\x87Rq\x04("
p2 += b"K\x01K\x01M\x00\x0c\x86" + b"cnumpy\ndtype\nq\x05" + sbs("u1") + b"K\x00K\x01\x87Rq\x06(K\x03" + sbs("|")
p2 += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
p2 += b"\x89T" + struct.pack("<I", 3072) + row + b"tb"
p2 += sbs("labels") + b"]q\x07K\x07a" + sbs("batch_label") + sbs("training batch 1 of 5") + b"u."
assert pickle.loads(p2, encoding="latin1")["labels"] == [7]
with open(os.path.join(OUT, "py2_cifar_batch"), "wb") as f:
    f.write(p2)

print(json.dumps({"written": sorted(f for f in os.listdir(OUT) if f.endswith(".mat"))}))
