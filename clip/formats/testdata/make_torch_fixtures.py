"""Writes tiny torch.save-format checkpoints WITHOUT torch (numpy + pickle only), for
clip/checkpoint_test.ts: shared-storage views, strides, offsets, fp16/bf16/f64/int64, `module.`
prefixes, `{"state_dict", "iteration"}`, zip (new) and legacy (pre-1.6) layouts.

Run: python3 clip/testdata/make_torch_fixtures.py clip/testdata
"""
import collections, io, pickle, struct, sys, types, zipfile
import numpy as np

# Fake `torch` / `torch._utils` modules so pickle writes the same GLOBALs torch does.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils

def _rebuild_tensor_v2(*a):  # never called here
    raise RuntimeError

_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
for name in ["FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage"]:
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)

class Storage:
    def __init__(self, cls, key, raw, numel):
        self.cls, self.key, self.raw, self.numel = cls, key, raw, numel

class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, self.args)

def bf16(a):
    u = np.asarray(a, dtype="<f4").view("<u4")
    return (u >> 16).astype("<u2").tobytes()  # exact for values representable in bf16

S0 = Storage(torch.FloatStorage, "0", np.arange(12, dtype="<f4").tobytes(), 12)
S1 = Storage(torch.HalfStorage, "1", np.array([0.5, -2.0, 65504.0, 1e-7], dtype="<f2").tobytes(), 4)
S2 = Storage(torch.BFloat16Storage, "2", bf16([1.5, -3.25]), 2)
S3 = Storage(torch.DoubleStorage, "3", np.array([0.1, -1e10], dtype="<f8").tobytes(), 2)
S4 = Storage(torch.LongStorage, "4", np.array([7, -3, 2147483647, 224], dtype="<i8").tobytes(), 4)
sd = collections.OrderedDict()
sd["module.a"] = Tensor(S0, 2, [2, 3], [3, 1])        # rows 2..7: [[2,3,4],[5,6,7]]
sd["module.b"] = Tensor(S0, 0, [3, 2], [1, 3])        # transposed view: [[0,3],[1,4],[2,5]]
sd["module.c"] = Tensor(S0, 1, [2, 2], [6, 2])        # strided: [[1,3],[7,9]]
sd["module.h"] = Tensor(S1, 0, [4], [1])
sd["module.bf"] = Tensor(S2, 0, [2], [1])
sd["module.d"] = Tensor(S3, 0, [2], [1])
sd["module.i"] = Tensor(S4, 0, [3], [1])
sd["module.input_resolution"] = Tensor(S4, 3, [], [])
obj = {"state_dict": sd, "iteration": 1000, "optimizer": None}
storages = [S0, S1, S2, S3, S4]

class ZipPickler(pickle.Pickler):
    def persistent_id(self, o):
        if isinstance(o, Storage):
            return ("storage", o.cls, o.key, "cpu", o.numel)
        return None

class LegacyPickler(pickle.Pickler):
    def persistent_id(self, o):
        if isinstance(o, Storage):
            return ("storage", o.cls, o.key, "cpu", o.numel, None)
        return None

def zip_bytes(compress):
    b = io.BytesIO()
    ZipPickler(b, protocol=2).dump(obj)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b.getvalue())
        for s in storages:
            z.writestr(f"archive/data/{s.key}", s.raw)
        z.writestr("archive/version", "3\n")
    return out.getvalue()

def legacy_bytes():
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
    LegacyPickler(out, protocol=2).dump(obj)
    pickle.dump([s.key for s in storages], out, protocol=2)
    for s in storages:
        out.write(struct.pack("<q", s.numel))
        out.write(s.raw)
    return out.getvalue()

if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    open(f"{d}/views.zip.pth", "wb").write(zip_bytes(False))
    open(f"{d}/views.deflate.pth", "wb").write(zip_bytes(True))
    open(f"{d}/views.legacy.pth", "wb").write(legacy_bytes())
