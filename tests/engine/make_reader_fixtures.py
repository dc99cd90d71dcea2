"""Fixtures for the safe checkpoint reader's tests (tests/engine/test_checkpoint_reader.cpp,
test_pickle_machine.cpp), written with real pickle and real torch.save:

    python tests/engine/make_reader_fixtures.py OUTDIR      # writes OUTDIR/reader/

- plain_p{0..5}.pkl: the same plain Python values (ints of every width, floats, text with
  escapes, bytes, lists, tuples, sets, OrderedDict, a Namespace, a shared list) in every protocol;
- tensors_{zip,legacy}_p{1..5}.pt: every dtype the reader supports, a shared storage, views,
  a transposed tensor, a Parameter, saved by torch.save in both formats and every protocol, with
  expected_tensors.txt beside them: one line per tensor, "name dtype numel sum v0 v1 ..." (the
  sidecar the C++ test compares against, values printed with repr);
- evil_*.pkl: pickles that would run `touch OUTDIR/reader/PWNED_<n>` through os.system,
  subprocess, eval, getattr gadgets, with REDUCE, INST and OBJ, in several protocols;
- bad_*.pt: well-formed files with wrong contents (a tensor past the end of its storage, a
  missing storage, an unknown storage type, a storage shorter than claimed);
- inline_storages.pt: tensors pickled by plain pickle inside a legacy checkpoint, whose storages
  are nested torch.save files (torch.storage._load_from_bytes).
"""
import argparse
import collections
import io
import os
import pickle
import struct
import sys
import zipfile

import torch

LEGACY_HEAD = (0x1950a86a20f9469cfc6c, 1001,
               {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}})


def plain_value():
    shared = [1, 2]
    return {
        "none": None, "true": True, "false": False,
        "small": 7, "byte": 255, "i16": 40000, "neg": -5, "i32min": -2 ** 31, "big": 2 ** 40,
        "i64max": 2 ** 63 - 1, "i64min": -2 ** 63,
        "pi": 3.25, "tiny": -1e-300, "inf": float("inf"),
        "text": "h\u00e9llo \u2713 back\\slash\nnew line \U0001f600",
        "bytes": b"\x00\xffab\\", "empty_bytes": b"",
        "list": [1, [2, 3], (4, "x")], "tuple5": (1, 2, 3, 4, 5), "set": {7}, "empty_tuple": (),
        "od": collections.OrderedDict([("a", 1), ("b", 2)]),
        "ns": argparse.Namespace(arch="transformer_lm", decoder_layers=2),
        "int_key": {1: "one"},
        "shared_1": shared, "shared_2": shared,
    }


def plain_files(out):
    for p in range(6):
        with open(os.path.join(out, f"plain_p{p}.pkl"), "wb") as fh:
            pickle.dump(plain_value(), fh, protocol=p)


def tensor_value():
    g = torch.Generator().manual_seed(3)
    shared = torch.randn(4, 6, generator=g)
    return collections.OrderedDict([
        ("f32", torch.randn(3, 5, generator=g)),
        ("f64", torch.randn(4, generator=g).double()),
        ("f16", torch.randn(2, 3, generator=g).half()),
        ("bf16", torch.randn(7, generator=g).bfloat16()),
        ("i64", torch.arange(-3, 9).reshape(3, 4)),
        ("i32", torch.arange(5, dtype=torch.int32) * -7),
        ("i16", torch.tensor([-300, 0, 300], dtype=torch.int16)),
        ("i8", torch.tensor([-128, 5, 127], dtype=torch.int8)),
        ("u8", torch.tensor([0, 200, 255], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("shared_a", shared), ("shared_b", shared),            # one storage, two names (tied weights)
        ("view", shared[1:3, 1::2]),                           # an offset and strides into it
        ("transposed", shared.t()),                            # non-contiguous
        ("param", torch.nn.Parameter(torch.full((2, 2), 0.5))),
        ("scalar", torch.tensor(-2.5)), ("empty", torch.zeros(0, 3)),
    ])


def tensor_files(out):
    obj = tensor_value()
    for p in range(1, 6):
        torch.save(obj, os.path.join(out, f"tensors_zip_p{p}.pt"), pickle_protocol=p)
        torch.save(obj, os.path.join(out, f"tensors_legacy_p{p}.pt"), pickle_protocol=p,
                   _use_new_zipfile_serialization=False)
    with open(os.path.join(out, "expected_tensors.txt"), "w") as fh:
        for name, t in obj.items():
            flat = t.detach().double().flatten().tolist()
            dtype = str(t.dtype).replace("torch.", "")
            fh.write(" ".join([name, dtype, str(t.numel()), repr(sum(flat))] + [repr(v) for v in flat]) + "\n")


class _Call:
    """Pickles as a call of fn(*args) (what a hostile file does with __reduce__)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def evil_files(out):
    import subprocess
    markers = []

    def marker():
        markers.append(os.path.join(out, f"PWNED_{len(markers)}"))
        return markers[-1]

    payloads = {
        "evil_reduce_p2.pkl": pickle.dumps({"model": _Call(os.system, f"touch {marker()}")}, protocol=2),
        "evil_reduce_p4.pkl": pickle.dumps([_Call(os.system, f"touch {marker()}")], protocol=4),
        "evil_reduce_p0.pkl": pickle.dumps(_Call(os.system, f"touch {marker()}"), protocol=0),
        "evil_subprocess.pkl": pickle.dumps(_Call(subprocess.call, ["touch", marker()]), protocol=3),
        "evil_eval.pkl": pickle.dumps(_Call(eval, f"__import__('os').system('touch {marker()}')"), protocol=4),
        # getattr(__import__('os'), 'system')('touch …'): a call of a call
        "evil_getattr.pkl": b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(X\x02\x00\x00\x00ostRX\x06\x00\x00\x00"
                            b"systemtR(X" + struct.pack("<I", len(f"touch {marker()}")) + f"touch {markers[-1]}".encode() +
                            b"tR.",
        "evil_inst.pkl": f"(S'touch {marker()}'\nios\nsystem\n.".encode(),                  # INST (protocol 0)
        "evil_obj.pkl": f"(cposix\nsystem\nS'touch {marker()}'\no.".encode(),               # OBJ (protocol 1)
        "evil_popen.pkl": b"\x80\x02csubprocess\nPopen\n(](X\x05\x00\x00\x00touchX" +
                          struct.pack("<I", len(marker())) + markers[-1].encode() + b"etR.",       # Popen([...])
    }
    for name, data in payloads.items():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)
    with open(os.path.join(out, "evil_markers.txt"), "w") as fh:
        fh.write("\n".join(markers) + "\n")


class _Storage:
    def __init__(self, key, numel, cls=torch.FloatStorage):
        self.key, self.numel, self.cls = key, numel, cls


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


class EvilStorage:  # a storage "type" torch does not have
    pass


def write_legacy(path, obj, storages):
    """torch's legacy layout by hand: storages = [(key, element count written, raw bytes)]."""
    with open(path, "wb") as fh:
        for part in LEGACY_HEAD:
            pickle.dump(part, fh, protocol=2)
        _TorchPickler(fh, protocol=2).dump(obj)
        pickle.dump([k for k, _, _ in storages], fh, protocol=2)
        for _, n, raw in storages:
            fh.write(struct.pack("<q", n) + raw)


def bad_files(out):
    four = struct.pack("<4f", 1, 2, 3, 4)
    s = _Storage("0", 4)
    write_legacy(os.path.join(out, "bad_past_storage.pt"), {"model": {"w": _Tensor(s, 0, (10,), (1,))}}, [("0", 4, four)])
    write_legacy(os.path.join(out, "bad_offset.pt"), {"model": {"w": _Tensor(s, 3, (2,), (1,))}}, [("0", 4, four)])
    write_legacy(os.path.join(out, "bad_missing_storage.pt"), {"model": {"w": _Tensor(_Storage("1", 4), 0, (4,), (1,))}},
                 [("0", 4, four)])
    write_legacy(os.path.join(out, "bad_storage_type.pt"),
                 {"model": {"w": _Tensor(_Storage("0", 4, EvilStorage), 0, (4,), (1,))}}, [("0", 4, four)])
    write_legacy(os.path.join(out, "bad_short_storage.pt"), {"model": {"w": _Tensor(s, 0, (4,), (1,))}}, [("0", 100, four)])
    write_legacy(os.path.join(out, "good_handmade.pt"), {"model": {"w": _Tensor(s, 1, (3,), (1,))}}, [("0", 4, four)])
    # tensors pickled by plain pickle inside a checkpoint: their storages are nested legacy torch.save
    # files, rebuilt by torch.storage._load_from_bytes; d and e share one (the pickle memo)
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    st = torch.arange(6, dtype=torch.float32).storage()
    with open(os.path.join(out, "inline_storages.pt"), "wb") as fh:
        for part in LEGACY_HEAD:
            pickle.dump(part, fh, protocol=2)
        pickle.dump({"model": {"a": t, "b": t[1], "c": torch.tensor([7, 8], dtype=torch.int16),
                               "d": _Tensor(st, 0, (3,), (1,)), "e": _Tensor(st, 3, (3,), (1,))}}, fh, protocol=2)
        pickle.dump([], fh, protocol=2)
    # a zip archive laid out like torch's whose storage record is shorter than data.pkl says
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump({"model": {"w": _Tensor(_Storage("0", 8), 0, (8,), (1,))}})
    with zipfile.ZipFile(os.path.join(out, "bad_zip_storage_size.pt"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/data/0", four)
        z.writestr("archive/version", "3\n")
    # an empty version record (LibTorch reads empty records into a null buffer; found by the fuzzer)
    with zipfile.ZipFile(os.path.join(out, "bad_zip_empty_record.pt"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/version", "")


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = os.path.join(os.path.abspath(argv[0]), "reader")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.startswith("PWNED"):
            os.remove(os.path.join(out, name))
    plain_files(out)
    tensor_files(out)
    evil_files(out)
    bad_files(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
