"""The request inside exported files: how the exact RenderRequest (JSON) and AUTOMATIC1111's `parameters` text are
written into, and read back from, each container the app exports, reading metadata only.

- PNG: text chunks `parameters` and `latent-studio`. JPEG, WebP: EXIF UserComment (parameters, as A1111 writes it)
  and ImageDescription (the request).
- WAV: a `LIST`/`INFO` chunk (INAM, ICMT = parameters, ISFT) and an `lsrq` chunk holding the JSON, both appended after
  the audio data. libsndfile writes no custom chunk and silently drops *every* INFO string once one passes 2045 bytes.
- FLAC, OGG Vorbis: Vorbis comments. TITLE, COMMENT = parameters and SOFTWARE go through libsndfile (UTF-8, any
  length); a LATENT_STUDIO field with the JSON is added to the comment block, as libsndfile only knows fixed keys.
- MP3: an ID3v2.4 tag in front (TIT2, COMM = parameters, TSSE, TXXX "latent-studio" = JSON), all UTF-8. libsndfile
  (through LAME) writes ID3v2.3 that labels UTF-8 text as Latin-1, and has room for one comment only.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from studio import __version__
from studio.errors import ExportError, RequestError

REQUEST_CHUNK = "latent-studio"
PARAMETERS_CHUNK = "parameters"
WAV_CHUNK = b"lsrq"
VORBIS_FIELD = "LATENT_STUDIO"


# --- pictures ---------------------------------------------------------------------------------------------------------


def png_texts(request_json: str, params: str):
    """The PNG text chunks that carry `params` and the request (Pillow's PngInfo)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_CHUNK, params)
    info.add_text(REQUEST_CHUNK, request_json)
    return info


def exif_texts(request_json: str, params: str) -> bytes:
    """The EXIF block (JPEG, WebP) that carries `params` (UserComment, as A1111 writes it) and the request
    (ImageDescription)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x9286] = "UNICODE\0".encode() + params.encode("utf-16-be")
    exif[0x010E] = request_json
    return exif.tobytes()


def stored_image_request_text(path: str | Path) -> str | None:
    """The request JSON an image carries (PNG text chunk or EXIF ImageDescription), or None; reads metadata only."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            text = image.info.get(REQUEST_CHUNK)
            if text is None and hasattr(image, "text"):
                text = image.text.get(REQUEST_CHUNK)
            if text is None:
                described = image.getexif().get(0x010E)  # a camera's description is not ours: look for our JSON
                text = described if isinstance(described, str) and '"model_id"' in described else None
    except FileNotFoundError:
        raise RequestError("file not found", path) from None
    except UnidentifiedImageError:
        raise RequestError("not an image file", path) from None
    except OSError as exc:
        raise RequestError(f"cannot read: {exc}", path) from None
    return text or None


# --- sounds -----------------------------------------------------------------------------------------------------------


def software_name() -> str:
    return f"Latent Studio {__version__}"


# --- writing ----------------------------------------------------------------------------------------------------


def tag_sound(fmt: str, tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    """Write the request and `params` into the sound file `tmp` (format `fmt`: WAV, FLAC, OGG or MP3) that will
    become `path`."""
    {"WAV": _tag_wav, "FLAC": _tag_flac, "OGG": _tag_ogg, "MP3": _tag_mp3}[fmt](tmp, request_json, params, title, path)


def _riff_chunk(chunk_id: bytes, payload: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def _tag_wav(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    info = b"".join(_riff_chunk(key, text.encode() + b"\0")
                    for key, text in ((b"INAM", title), (b"ICMT", params), (b"ISFT", software_name())) if text)
    with open(tmp, "r+b") as f:
        end = f.seek(0, 2)
        f.write(b"\0" * (end & 1) + _riff_chunk(b"LIST", b"INFO" + info)
                + _riff_chunk(WAV_CHUNK, request_json.encode()))
        size = f.tell() - 8
        if size > 0xFFFFFFFF:
            raise ExportError("the sound is too long for a WAV file (over 4 GB); use FLAC", path)
        f.seek(4)
        f.write(struct.pack("<I", size))


def _vorbis_with_field(block: bytes, key: str, value: str) -> bytes:
    """A Vorbis comment block (vendor, count, fields) with the field `key`=`value` added."""
    (vendor_len,) = struct.unpack_from("<I", block)
    (count,) = struct.unpack_from("<I", block, 4 + vendor_len)
    entry = f"{key}={value}".encode()
    return (block[:4 + vendor_len] + struct.pack("<I", count + 1) + block[8 + vendor_len:]
            + struct.pack("<I", len(entry)) + entry)


def _vorbis_field(block: bytes, key: str) -> str | None:
    (vendor_len,) = struct.unpack_from("<I", block)
    pos = 4 + vendor_len
    (count,) = struct.unpack_from("<I", block, pos)
    pos += 4
    for _ in range(count):
        (n,) = struct.unpack_from("<I", block, pos)
        name, _, value = block[pos + 4:pos + 4 + n].partition(b"=")
        if name.upper() == key.encode():
            return value.decode()
        pos += 4 + n
    return None


def _tag_flac(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    data = tmp.read_bytes()
    blocks: list[tuple[int, bytes]] = []
    pos, last = 4, False
    while not last:
        header, size = data[pos], int.from_bytes(data[pos + 1:pos + 4], "big")
        last = bool(header & 0x80)
        blocks.append((header & 0x7F, data[pos + 4:pos + 4 + size]))
        pos += 4 + size
    index = [kind for kind, _ in blocks].index(4)  # VORBIS_COMMENT: there is one, as the comment tag is set
    body = _vorbis_with_field(blocks[index][1], VORBIS_FIELD, request_json)
    if len(body) >= 1 << 24:
        raise ExportError("the request is too large for a FLAC comment block", path)
    blocks[index] = (4, body)
    out = [b"fLaC"]
    for i, (kind, payload) in enumerate(blocks):
        out.append(bytes([kind | (0x80 if i == len(blocks) - 1 else 0)]) + len(payload).to_bytes(3, "big") + payload)
    tmp.write_bytes(b"".join(out) + data[pos:])


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0) via zlib's reflected one on bit-reversed bytes."""
    return int(f"{zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF:032b}"[::-1], 2)


def _ogg_page(flags: int, granule: int, serial: int, seq: int, lacing: bytes, body: bytes) -> bytes:
    page = b"OggS\0" + struct.pack("<BqIII", flags, granule, serial, seq, 0) + bytes([len(lacing)]) + lacing + body
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def _ogg_pages(data: bytes) -> list[tuple[int, int, int, int, bytes, bytes]]:
    """(flags, granule, serial, sequence, lacing, body) of each page."""
    pages, pos = [], 0
    while pos < len(data):
        flags, granule, serial, seq, _crc, count = struct.unpack_from("<BqIIIB", data, pos + 5)
        lacing = data[pos + 27:pos + 27 + count]
        body = data[pos + 27 + count:pos + 27 + count + sum(lacing)]
        pages.append((flags, granule, serial, seq, lacing, body))
        pos += 27 + count + len(body)
    return pages


def _header_packets(pages: list, wanted: int) -> tuple[list[bytes], int]:
    """The first `wanted` packets of a stream and how many pages they fill."""
    packets, current = [], b""
    for index, (_flags, _granule, _serial, _seq, lacing, body) in enumerate(pages):
        pos = 0
        for size in lacing:
            current += body[pos:pos + size]
            pos += size
            if size < 255:
                packets.append(current)
                current = b""
                if len(packets) == wanted:
                    return packets, index + 1
    raise ValueError("the Ogg stream ends inside its headers")


def _tag_ogg(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    pages = _ogg_pages(tmp.read_bytes())
    packets, used = _header_packets(pages, 3)
    ident, comment, setup = packets
    if not comment.startswith(b"\x03vorbis") or sum(len(page[4]) for page in pages[:used]) != sum(
            len(p) // 255 + 1 for p in packets):  # the headers must fill their pages, and nothing else
        raise ExportError("libsndfile wrote an unexpected Ogg Vorbis header layout", path)
    comment = b"\x03vorbis" + _vorbis_with_field(comment[7:-1], VORBIS_FIELD, request_json) + b"\x01"
    lacing = b"".join(b"\xff" * (len(p) // 255) + bytes([len(p) % 255]) for p in (comment, setup))
    body, serial, first_seq = comment + setup, pages[0][2], pages[0][3]
    out = [_ogg_page(*pages[0])]
    pos, continued = 0, False
    for start in range(0, len(lacing), 255):
        part = lacing[start:start + 255]
        ends_packet = any(v < 255 for v in part)
        out.append(_ogg_page(1 if continued else 0, 0 if ends_packet else -1, serial, first_seq + len(out),
                             part, body[pos:pos + sum(part)]))
        pos += sum(part)
        continued = part[-1] == 255
    shift = len(out) - used
    out += [_ogg_page(flags, granule, serial_, seq + shift, lacing_, body_)
            for flags, granule, serial_, seq, lacing_, body_ in pages[used:]]
    tmp.write_bytes(b"".join(out))


def _synchsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _tag_mp3(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    frames = [("TIT2", b"\x03" + title.encode()) if title else None,
              ("COMM", b"\x03eng\0" + params.encode()),
              ("TSSE", b"\x03" + software_name().encode()),
              ("TXXX", b"\x03" + REQUEST_CHUNK.encode() + b"\0" + request_json.encode())]
    tag = b"".join(name.encode() + _synchsafe(len(payload)) + b"\0\0" + payload
                   for name, payload in filter(None, frames))
    if len(tag) >= 1 << 28:
        raise ExportError("the request is too large for an ID3 tag", path)
    tmp.write_bytes(b"ID3\x04\0\0" + _synchsafe(len(tag)) + tag + tmp.read_bytes())


# --- reading the request ------------------------------------------------------------------------------------------


def _wav_request(f: BinaryIO) -> str | None:
    f.seek(12)
    while len(header := f.read(8)) == 8:
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == WAV_CHUNK:
            return f.read(size).decode()
        f.seek(size + (size & 1), 1)
    return None


def _flac_request(f: BinaryIO) -> str | None:
    f.seek(4)
    while len(header := f.read(4)) == 4:
        size = int.from_bytes(header[1:], "big")
        if header[0] & 0x7F == 4:
            return _vorbis_field(f.read(size), VORBIS_FIELD)
        if header[0] & 0x80:
            break
        f.seek(size, 1)
    return None


def _ogg_request(f: BinaryIO) -> str | None:
    f.seek(0)
    pages = []
    while True:  # the comment header is the stream's second packet: read pages until it is complete
        head = f.read(27)
        if len(head) < 27 or head[:4] != b"OggS":
            return None
        lacing = f.read(head[26])
        pages.append((0, 0, 0, 0, lacing, f.read(sum(lacing))))
        try:
            (_ident, comment), _used = _header_packets(pages, 2)
        except ValueError:
            continue
        return _vorbis_field(comment[7:], VORBIS_FIELD) if comment.startswith(b"\x03vorbis") else None


def _id3_request(f: BinaryIO) -> str | None:
    f.seek(0)
    header = f.read(10)
    version, flags = header[3], header[5]
    size = sum(b << (7 * (3 - i)) for i, b in enumerate(header[6:10]))
    tag = f.read(size)
    if version not in (3, 4):
        return None
    if version == 3 and flags & 0x80:  # whole-tag unsynchronisation
        tag = tag.replace(b"\xff\x00", b"\xff")
    pos = 0
    if flags & 0x40:  # extended header
        pos = (sum(b << (7 * (3 - i)) for i, b in enumerate(tag[:4])) if version == 4
               else 4 + struct.unpack(">I", tag[:4])[0])
    while pos + 10 <= len(tag) and tag[pos] != 0:
        frame_id, raw = tag[pos:pos + 4], tag[pos + 4:pos + 8]
        length = sum(b << (7 * (3 - i)) for i, b in enumerate(raw)) if version == 4 else struct.unpack(">I", raw)[0]
        payload = tag[pos + 10:pos + 10 + length]
        pos += 10 + length
        if frame_id == b"TXXX" and payload[:1] in (b"\x00", b"\x03"):
            description, _, value = payload[1:].partition(b"\0")
            if description == REQUEST_CHUNK.encode():
                return value.rstrip(b"\0").decode("utf-8" if payload[0] == 3 else "latin-1")
    return None


def stored_audio_request_text(path: str | Path) -> str | None:
    """The request JSON a sound file carries, or None; reads metadata only."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                text = _wav_request(f)
            elif head[:4] == b"fLaC":
                text = _flac_request(f)
            elif head[:4] == b"OggS":
                text = _ogg_request(f)
            elif head[:3] == b"ID3":
                text = _id3_request(f)
            else:
                import soundfile as sf

                sf.info(str(path))  # a sound without our tags, or not a sound at all
                text = None
    except FileNotFoundError:
        raise RequestError("file not found", path) from None
    except RuntimeError:  # libsndfile's errors
        raise RequestError("not a sound file", path) from None
    except OSError as exc:
        raise RequestError(f"cannot read: {exc.strerror or exc}", path) from None
    except (struct.error, ValueError, IndexError):  # UnicodeDecodeError is a ValueError
        raise RequestError("the sound file's metadata is damaged", path) from None
    return text or None
