"""Hostile files, built on the fly in temporary folders (nothing binary is committed): code-bearing model files with
payloads, pickles that explode, special files where regular ones belong, nesting and sizes past every limit, and
pictures, sounds and projects that carry any of them.

Payload convention: a payload that writes creates a file whose name contains `PWNED`; one that reads takes the bytes
of a file named `secret.txt` holding `SECRET_TOKEN`. The suite fails when a `PWNED` file appears anywhere under a
case's folder, and when an output holds the secret.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

MARKER = "PWNED"
SECRET_TOKEN = b"SECRET-TOKEN-0123456789abcdef" * 4  # 116 bytes: enough for an 8x8 picture of it


# --- TorchScript ----------------------------------------------------------------------------------------------------


class _Benign(torch.nn.Module):
    """A well-behaved generator: latent (1, 8) → picture (1, 1, 8, 8) in -1..1."""

    def __init__(self, path: str = ""):
        super().__init__()
        self.path = path
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.w * z.sum())


class _FromFileWrite(_Benign):
    """Creates (or overwrites) a file of its choosing: from_file with shared=True maps it writable."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.path, shared=True, size=64, dtype=torch.uint8)
        t.fill_(66)
        return torch.tanh(self.w * z.sum()) + t[0].float() * 0.0  # used: TorchScript drops dead code


class _FromFileRead(_Benign):
    """Returns the bytes of a file of its choosing as the picture's pixels."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.path, shared=False, size=64, dtype=torch.uint8)
        return (t.float() / 127.5 - 1.0).reshape(1, 1, 8, 8)


class _Save(_Benign):
    """Writes a file with aten::save."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        torch.save(z, self.path)
        return torch.tanh(self.w * z.sum())


class _Loop(_Benign):
    """Never returns."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        while bool(x.sum() > -1e30):
            x = x + 0.0
        return torch.tanh(self.w * x.sum())


class _Helper(_Benign):
    """The payload sits in a helper method that forward calls (only the inlined graph shows it)."""

    def stash(self, z: torch.Tensor) -> torch.Tensor:
        return torch.from_file(self.path, shared=True, size=64, dtype=torch.uint8)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = self.stash(z)
        t.fill_(66)
        return torch.tanh(self.w * z.sum()) + t[0].float() * 0.0


class _Dormant(_Benign):
    """The payload only runs for a latent no seed gives: a static check must still see it."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if bool(z.abs().max() > 1e6):
            torch.save(z, self.path)
        return torch.tanh(self.w * z.sum())


class _Exported(_Benign):
    """The payload in another exported method, not called by forward."""

    @torch.jit.export
    def extra(self, z: torch.Tensor) -> torch.Tensor:
        return torch.from_file(self.path, shared=True, size=64, dtype=torch.uint8)


TORCHSCRIPT = {"benign": _Benign, "from-file-write": _FromFileWrite, "from-file-read": _FromFileRead,
               "save": _Save, "loop": _Loop, "helper-method": _Helper, "dormant-branch": _Dormant,
               "exported-method": _Exported}


def torchscript(kind: str, out: Path, path: str = "") -> Path:
    """A TorchScript module file of `kind` (see TORCHSCRIPT) whose payload touches `path`."""
    torch.jit.save(torch.jit.script(TORCHSCRIPT[kind](path)), str(out))
    return out


# --- ONNX -----------------------------------------------------------------------------------------------------------


def onnx_model(kind: str, out: Path, location: str = "") -> Path:
    """An ONNX generator latent (1, 8) → picture (1, 1, 8, 8): "benign", "custom-domain" (an operator of a domain
    that is not ONNX's), "external" (its weights in external data at `location`)."""
    import onnx
    from onnx import TensorProto, helper

    w = np.linspace(-0.1, 0.1, 8 * 64, dtype=np.float32).reshape(8, 64)
    weight = helper.make_tensor("W", TensorProto.FLOAT, [8, 64], w.flatten().tolist())
    if kind == "external":
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(8 * 64 * 4))):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    shape = helper.make_tensor("S", TensorProto.INT64, [4], [1, 1, 8, 8])
    nodes = [helper.make_node("MatMul", ["z", "W"], ["m"], name="matmul"),
             helper.make_node("Tanh", ["m"], ["t"], name="tanh")]
    opsets = [helper.make_opsetid("", 17)]
    if kind == "custom-domain":
        nodes.append(helper.make_node("Exfiltrate", ["t"], ["t2"], name="evil_node", domain="com.evil.ops"))
        opsets.append(helper.make_opsetid("com.evil.ops", 1))
        nodes.append(helper.make_node("Reshape", ["t2", "S"], ["image"], name="reshape"))
    else:
        nodes.append(helper.make_node("Reshape", ["t", "S"], ["image"], name="reshape"))
    graph = helper.make_graph(nodes, "gen", [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
                              initializer=[weight, shape])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    out.write_bytes(model.SerializeToString())
    return out


# --- pickles (PyTorch checkpoints) -----------------------------------------------------------------------------------


def billion_laughs(out: Path, levels: int = 60) -> Path:
    """A tiny checkpoint whose dicts share children: 2**levels leaves when walked as a tree."""
    node: dict = {"w": torch.zeros(1)}
    for _ in range(levels):
        node = {"a": node, "b": node}
    torch.save({"state_dict": node}, out)
    return out


def self_referencing(out: Path) -> Path:
    """A checkpoint whose state dict holds itself."""
    loop: dict = {"w": torch.zeros(1)}
    loop["again"] = loop
    torch.save({"state_dict": loop}, out)
    return out


def list_laughs(out: Path, levels: int = 60) -> Path:
    """A raw pickle of lists sharing children (protocol 2 opcodes, no torch zip)."""
    ops = [b"\x80\x02", b"]", b"r" + struct.pack("<I", 0)]
    for i in range(1, levels + 1):
        ops += [b"(", b"j" + struct.pack("<I", i - 1), b"j" + struct.pack("<I", i - 1), b"l",
                b"r" + struct.pack("<I", i)]
    ops.append(b".")
    out.write_bytes(b"".join(ops))
    return out


class _Trap:
    """Unpickling this makes a folder: the proof that a pickle ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def reduce_trap(out: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "trap": _Trap(str(marker))}, out)
    return out


def raw_reduce_trap(out: Path, marker: Path) -> Path:
    out.write_bytes(pickle.dumps(_Trap(str(marker)), protocol=2))
    return out


# --- NVIDIA network pickles (torch_utils.persistence records, read by studio.io.nv_pickle) -----------------------


def _u(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


_RECORD = b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n"  # GLOBAL (protocol 2)


def _record_ops(modules: bytes) -> list[bytes]:
    """Opcodes pushing one persistence record whose state's _modules dict is built by `modules` (left on the stack)."""
    return [_RECORD, b"}", b"(", _u("type"), _u("class"), _u("version"), b"K\x06", _u("module_src"),
            _u("class Generator: pass\n"), _u("class_name"), _u("Generator"), _u("state"), b"}", b"(",
            _u("_modules"), modules, b"u", b"u", b"\x85", b"R"]


def network_pickle_loop(out: Path) -> Path:
    """A network snapshot whose G_ema holds itself as a submodule (a SETITEM into its memoised _modules dict after
    the record is built): walking its modules as a tree never ends."""
    ops = [b"\x80\x02", *_record_ops(b"}q\x01"), b"q\x02", b"h\x01", _u("loop"), b"h\x02", b"s", b"0", b"0",
           b"}", _u("G_ema"), b"h\x02", b"s", b"."]
    out.write_bytes(b"".join(ops))
    return out


def network_pickle_deep(out: Path, levels: int = 200) -> Path:
    """A network snapshot whose G_ema nests `levels` submodules, one in another."""
    ops = [b"\x80\x02", *_record_ops(b"}")]
    for _ in range(levels):
        ops = [b"\x80\x02", *_record_ops(b"}" + _u("m") + b"".join(ops[1:]) + b"s")]
    out.write_bytes(b"".join([ops[0], b"}", _u("G_ema"), *ops[1:], b"s", b"."]))
    return out


def network_pickle_trap(out: Path, marker: Path) -> Path:
    """A real-looking network snapshot (the fixture generator, pickled the persistence way) with an os.mkdir call in
    it: the reader must refuse the global, naming it, and run nothing."""
    from sg_pickles import fixture_snapshot

    return fixture_snapshot("sg2_uncond", out, extra={"trap": _Trap(str(marker))})


# --- nesting --------------------------------------------------------------------------------------------------------


def deep_json(depth: int = 100_000, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def deep_toml_value(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


# --- pictures, sounds ------------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(out: Path, width: int = 8, height: int = 8, texts: dict[str, str] | None = None,
        ztexts: dict[str, bytes] | None = None, itxts: dict[str, bytes] | None = None, idat: bytes | None = None,
        ) -> Path:
    """A greyscale PNG written chunk by chunk: any header size, with tEXt / zTXt (data given compressed) / iTXt
    (compressed) chunks; `idat` the compressed pixel stream (default: zeros, at most 64 kB of them: a huge header
    comes with almost no data, as a decompression bomb's does)."""
    if idat is None:  # every row for a small picture; a header that lies (a few rows) for a huge one
        idat = zlib.compress(b"\0" * min((width + 1) * height, 1 << 16), 9)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))]
    for key, text in (texts or {}).items():
        chunks.append(_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")))
    for key, data in (ztexts or {}).items():
        chunks.append(_png_chunk(b"zTXt", key.encode("latin-1") + b"\0\0" + data))
    for key, data in (itxts or {}).items():
        chunks.append(_png_chunk(b"iTXt", key.encode("latin-1") + b"\0\1\0\0\0" + data))
    chunks.append(_png_chunk(b"IDAT", idat))
    chunks.append(_png_chunk(b"IEND", b""))
    out.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunks))
    return out


def zeros_stream(count: int) -> bytes:
    """A zlib stream of `count` zero bytes, made in milliseconds for any count: one 1 MiB block compressed after a
    full flush (so every copy is the same bytes), repeated, then the rest, an empty final block and the checksum
    (Adler-32 of n zeros: a = 1, b = n mod 65521)."""
    block = 1 << 20
    z = zlib.compressobj(9)
    head = z.compress(b"\0" * block) + z.flush(zlib.Z_FULL_FLUSH)
    again = z.compress(b"\0" * block) + z.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(count, block)
    parts = [head[:2]]  # the zlib header
    body = [head[2:]] + [again] * (whole - 1) if whole else []
    parts += body
    if rest:
        tail = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts.append(tail.compress(b"\0" * rest) + tail.flush(zlib.Z_FULL_FLUSH))
    parts.append(b"\x03\x00")  # a final, empty, fixed-Huffman block
    parts.append(struct.pack(">I", ((count % 65521) << 16) | 1))
    return b"".join(parts)


def big_png(out: Path, side: int) -> Path:
    """A real side × side greyscale PNG of zeros: every row is there, so decoding allocates side² bytes."""
    return png(out, side, side, idat=zeros_stream((side + 1) * side))


def wav(out: Path, request_text: str | None, rate: int = 8000, samples: int = 1024) -> Path:
    """A mono 16-bit WAV of silence with our `lsrq` chunk holding `request_text`."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", samples * 2) + b"\0" * (samples * 2)
    if request_text is not None:
        data = request_text.encode()
        body += b"lsrq" + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
    out.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return out


# --- special files ---------------------------------------------------------------------------------------------------


SPECIAL = ("fifo", "dev-zero", "symlink-loop")


def special(path: Path, kind: str) -> Path:
    """Make `path` a FIFO, a link to /dev/zero, or one end of a symlink loop (replacing what is there)."""
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-loop":
        other = path.with_name(path.name + ".loop")
        path.symlink_to(other.name)
        other.symlink_to(path.name)
    else:
        raise ValueError(kind)
    return path


# --- weights ---------------------------------------------------------------------------------------------------------


def safetensors_header(path: Path) -> tuple[dict, int]:
    """(the header of a safetensors file, where its data starts)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), 8 + n


def rewrite_tensors(path: Path, change) -> Path:
    """Load every tensor, let `change(dict)` edit the dict in place, save it back (keeping the metadata)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def first_float_tensor(tensors: dict) -> str:
    return next(k for k in sorted(tensors) if tensors[k].is_floating_point() and tensors[k].numel() > 1)


def raw_header(path: Path, header: dict | str, data: bytes = b"") -> Path:
    """A safetensors file with this header (a dict, or raw text) and data."""
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path
