"""Hand-made hostile pickles against the restricted unpickler of
``mc.load_weights`` (``minicnn.torch_pickle``), in both torch layouts (zip
``archive/data.pkl`` and the legacy stream of pickles) and in protocols 2
and 4 (GLOBAL + BINPUT against STACK_GLOBAL + MEMOIZE).

* Poisoning: BUILD applied to an allowed global (minicnn's own
  ``_rebuild_tensor_v2``, the OrderedDict class, a dtype token) must be
  refused with a ValueError naming the path, and leave nothing changed: a
  good file loads afterwards in the same process.
* Shared structure: ``t = (t, t)`` nested 64 deep is a few hundred bytes
  of pickle and 2**64 paths; the load must finish (or refuse) at once.

Each load runs in a subprocess with a timeout, so a regression hangs or
poisons that process only.
"""
import io
import json
import pickle
import pickletools
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy
import pytest

torch = pytest.importorskip("torch")

PROTOCOLS = (2, 4)
LAYOUTS = ("zip", "legacy")


# -- writing pickles opcode by opcode ------------------------------------------
def _unicode(text):
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _global(module, name, protocol):
    if protocol >= 4:
        return _unicode(module) + _unicode(name) + pickle.STACK_GLOBAL
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


class _Memo:
    """Memo writes and reads: BINPUT i (protocol 2) or MEMOIZE (protocol 4,
    which numbers entries in order)."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.count = 0

    def put(self):
        self.count += 1
        if self.protocol >= 4:
            return pickle.MEMOIZE
        return pickle.BINPUT + bytes([self.count - 1])

    @staticmethod
    def get(index):
        return pickle.BINGET + bytes([index]) if index < 256 else pickle.LONG_BINGET + struct.pack("<I", index)


def _pickle(body, protocol):
    """A complete pickle: PROTO, ``body`` (which leaves one object), STOP."""
    return pickle.PROTO + bytes([protocol]) + body + pickle.STOP


def _slot_state(state_dict):
    """BUILD's (dict state, slot state) pair: slot state goes through setattr."""
    items = b"".join(_unicode(k) + v for k, v in state_dict.items())
    return pickle.NONE + pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS + pickle.TUPLE2


def _dict_state(state_dict):
    """BUILD's plain dict state: goes into the object's __dict__."""
    items = b"".join(_unicode(k) + v for k, v in state_dict.items())
    return pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS


def _state_dict_of(protocol, key, value_body):
    """``{key: value}`` as a plain dict pickle body."""
    return pickle.EMPTY_DICT + _unicode(key) + value_body + pickle.SETITEM


def _poison_bodies(protocol):
    """name -> pickle body that applies BUILD to something the file must not change."""
    rebuild = _global("torch._utils", "_rebuild_tensor_v2", protocol)
    od = _global("collections", "OrderedDict", protocol)
    return {
        # The issue's 60-byte file: slot state {'__defaults__': ()} on minicnn's function.
        "function_slot_defaults": rebuild + _slot_state({"__defaults__": pickle.EMPTY_TUPLE}) + pickle.BUILD,
        # Plain dict state: would land in the function's __dict__.
        "function_dict": rebuild + _dict_state({"evil": pickle.NEWTRUE}) + pickle.BUILD,
        # The OrderedDict class itself (not an instance the file made).
        "class_slot": od + _slot_state({"evil": pickle.NEWTRUE}) + pickle.BUILD,
        # A dtype token, shared by every load in the process.
        "dtype_token_slot": _global("torch", "float32", protocol)
        + _slot_state({"element": _unicode("int8")}) + pickle.BUILD,
        # An OrderedDict the file made, but with slot state (setattr, descriptors).
        "instance_slot": od + pickle.EMPTY_TUPLE + pickle.REDUCE
        + _slot_state({"__class__": od}) + pickle.BUILD,
        # Poison nested inside an otherwise ordinary state dict.
        "inside_state_dict": _state_dict_of(
            protocol, "w", rebuild + _slot_state({"__defaults__": pickle.EMPTY_TUPLE}) + pickle.BUILD),
    }


def _shared_tuple(protocol, depth=64):
    """Body leaving ``t``, where ``t = (t', t')`` nested ``depth`` deep over
    an empty tuple: each level refers twice, by memo, to the one below."""
    memo = _Memo(protocol)
    body = pickle.EMPTY_TUPLE + memo.put() + pickle.POP
    for level in range(depth):
        body += memo.get(level) + memo.get(level) + pickle.TUPLE2 + memo.put() + pickle.POP
    return body + memo.get(depth)


def _exponential_bodies(protocol):
    """name -> (body holding the 64-deep shared tuple in a place the loader
    looks at, None if the file must load, else a word its refusal names)."""
    t = _shared_tuple(protocol)
    rebuild = _global("torch._utils", "_rebuild_tensor_v2", protocol)
    cases = {
        "state_dict_value": (_state_dict_of(protocol, "w", t), None),
        "list_value": (_state_dict_of(protocol, "w", pickle.EMPTY_LIST + t + pickle.APPEND), None),
        # As a tensor's size: the loader's error message must not repr it whole.
        "tensor_size": (rebuild + pickle.MARK + pickle.NONE + pickle.BININT1 + b"\x00" + t + _Memo.get(64)
                        + pickle.NEWFALSE + pickle.NONE + pickle.TUPLE + pickle.REDUCE, "size"),
        # As a persistent id.
        "persistent_id": (t + pickle.BINPERSID, "persistent id"),
        # As a dict key, a set element, an OrderedDict key: hashing walks every path.
        "setitem_key": (pickle.EMPTY_DICT + t + pickle.NONE + pickle.SETITEM, "hash"),
        "setitems_key": (pickle.EMPTY_DICT + pickle.MARK + t + pickle.NONE + pickle.SETITEMS, "hash"),
        "dict_key": (pickle.MARK + t + pickle.NONE + pickle.DICT, "hash"),
        "ordered_dict_pairs": (_global("collections", "OrderedDict", protocol) + pickle.EMPTY_LIST
                               + t + pickle.NONE + pickle.TUPLE2 + pickle.APPEND + pickle.TUPLE1 + pickle.REDUCE
                               , "hash"),
    }
    if protocol >= 4:
        cases["set_element"] = (pickle.EMPTY_SET + pickle.MARK + t + pickle.ADDITEMS, "hash")
        cases["frozenset_element"] = (pickle.MARK + t + pickle.FROZENSET, "hash")
    return cases


# -- the two layouts -----------------------------------------------------------
def _write(path, layout, pickled):
    if layout == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", pickled)
            z.writestr("archive/byteorder", "little")
    else:
        from minicnn.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION
        header = b"".join(pickle.dumps(x, protocol=2) for x in (
            MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": PROTOCOL_VERSION, "little_endian": True}))
        path.write_bytes(header + pickled + pickle.dumps([], protocol=2))
    return path


def _good_file(tmp_path, layout):
    state = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "bias": torch.tensor([1.5, -2.0])}
    path = tmp_path / f"good_{layout}.pth"
    torch.save(state, path, _use_new_zipfile_serialization=(layout == "zip"))
    return path, {k: v.numpy().tolist() for k, v in state.items()}


_CHILD = textwrap.dedent("""
    import json, sys, time
    import minicnn as mc
    from minicnn import torch_pickle

    def attempt(path):
        start = time.perf_counter()
        try:
            loaded = mc.load_weights(path)
            outcome, error, is_value_error = "loaded", "", False
        except Exception as e:
            outcome, error, is_value_error = type(e).__name__, str(e), isinstance(e, ValueError)
        return {"outcome": outcome, "is_value_error": is_value_error, "error": error[:5000],
                "seconds": time.perf_counter() - start}

    report = {"attempts": [attempt(p) for p in sys.argv[1:-1]]}
    good = mc.load_weights(sys.argv[-1]) if sys.argv[-1] != "-" else {}
    report["good"] = {k: v.data.tolist() for k, v in good.items()}
    f = torch_pickle._rebuild_tensor_v2
    report["untouched"] = (f.__defaults__ == (None,) and not f.__dict__
                           and torch_pickle.ALLOWED_GLOBALS["torch", "float32"].element == "float32"
                           and not hasattr(torch_pickle.collections.OrderedDict, "evil"))
    print(json.dumps(report))
""")


def _run(paths, good="-", timeout=60):
    """Load each of ``paths`` in turn in one fresh process, then ``good``."""
    result = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths), str(good)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- poisoning -----------------------------------------------------------------
def test_the_issue_file_is_60_bytes_of_build_on_an_allowed_function():
    # The hand-made opcodes are what the issue describes, checked by pickletools.
    pickled = _pickle(_poison_bodies(2)["function_slot_defaults"], 2)
    ops = [op.name for op, _, _ in pickletools.genops(pickled)]
    assert ops == ["PROTO", "GLOBAL", "NONE", "EMPTY_DICT", "MARK", "BINUNICODE", "EMPTY_TUPLE", "SETITEMS",
                   "TUPLE2", "BUILD", "STOP"]
    assert len(pickled) <= 70
    # Python's own unpickler does let it rewrite a function: the attack is real.
    victim = _victim
    pickle.loads(pickled.replace(b"torch._utils\n_rebuild_tensor_v2", f"{__name__}\n_victim".encode()))
    assert victim.__defaults__ == ()
    with pytest.raises(TypeError):
        victim()


def _victim(x=1):
    return x


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_build_on_anything_but_a_new_ordered_dict_is_refused_and_changes_nothing(tmp_path, layout, protocol):
    good, expected = _good_file(tmp_path, layout)
    paths = [_write(tmp_path / f"{name}_{layout}_{protocol}.pth", layout, _pickle(body, protocol))
             for name, body in _poison_bodies(protocol).items()]
    report = _run(paths, good)
    for path, attempt in zip(paths, report["attempts"]):
        assert attempt["is_value_error"], (path.name, attempt)
        assert repr(str(path)) in attempt["error"], attempt["error"]
        assert "tries to modify" in attempt["error"], attempt["error"]
    assert report["untouched"]
    assert report["good"] == expected


def test_poison_in_the_legacy_header_pickles_is_refused_too(tmp_path):
    layout = "legacy"                   # the zip layout has one pickle, tested above
    body = _poison_bodies(2)["function_slot_defaults"]
    path = tmp_path / "header.pth"
    path.write_bytes(_pickle(body, 2))  # in place of the magic number
    good, expected = _good_file(tmp_path, layout)
    report = _run([path], good)
    assert report["attempts"][0]["is_value_error"], report
    assert repr(str(path)) in report["attempts"][0]["error"]
    assert report["untouched"] and report["good"] == expected


@pytest.mark.parametrize("layout", LAYOUTS)
def test_torch_state_dict_metadata_still_goes_through_build(tmp_path, layout):
    # torch pickles an OrderedDict state dict with BUILD {'_metadata': ...}: the one use of BUILD allowed.
    state = torch.nn.Linear(3, 2).state_dict()
    path = tmp_path / "linear.pth"
    torch.save(state, path, _use_new_zipfile_serialization=(layout == "zip"))
    import minicnn as mc
    loaded = mc.load_weights(path)
    assert sorted(loaded) == ["bias", "weight"]
    numpy.testing.assert_array_equal(loaded["weight"].data, state["weight"].numpy())
    assert "" in getattr(loaded, "_metadata", {})


# -- shared structure ----------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_tuple_shared_64_deep_loads_or_is_refused_at_once(tmp_path, layout, protocol):
    good, expected = _good_file(tmp_path, layout)
    cases = _exponential_bodies(protocol)
    paths, refusals = [], []
    for name, (body, refusal) in cases.items():
        pickled = _pickle(body, protocol)
        pickletools.dis(pickled, out=io.StringIO())  # well formed: one object left at STOP
        paths.append(_write(tmp_path / f"{name}_{layout}_{protocol}.pth", layout, pickled))
        refusals.append(refusal)
    assert all(p.stat().st_size < 1200 for p in paths)
    report = _run(paths, good, timeout=60)
    for path, refusal, attempt in zip(paths, refusals, report["attempts"]):
        assert attempt["seconds"] < 2, (path.name, attempt["seconds"])
        if refusal is None:
            assert attempt["outcome"] == "loaded", (path.name, attempt)
        else:
            assert attempt["is_value_error"], (path.name, attempt)
            assert repr(str(path)) in attempt["error"] and refusal in attempt["error"], attempt["error"]
            assert len(attempt["error"]) < 1000, attempt["error"]
    assert report["good"] == expected


def test_the_shared_tuple_is_one_object_per_level_after_loading(tmp_path):
    # Memoised, not just fast: the loaded tuple shares its levels as the pickle did.
    import minicnn as mc
    path = _write(tmp_path / "t.pth", "zip", _pickle(_state_dict_of(2, "w", _shared_tuple(2, depth=64)), 2))
    t = mc.load_weights(path)["w"]
    for _ in range(64):
        assert t[0] is t[1]
        t = t[0]
    assert t == ()
