"""The request inside exported files: how the exact RenderRequest (JSON) and AUTOMATIC1111's `parameters` text are
written into, and read back from, each container the app exports, reading metadata only: from regular files, each
stored text capped (MAX_METADATA_TEXT) and depth-checked (MAX_JSON_DEPTH) before any JSON parser sees it.

- PNG: text chunks `parameters` and `latent-studio`.
- JPEG, WebP: `parameters` as the Exif UserComment (tag 0x9286) in the Exif sub-IFD (IFD0's pointer 0x8769), with the
  8-byte "UNICODE\\0" character code and UTF-16 big-endian text, as AUTOMATIC1111 writes it through piexif, typed
  UNDEFINED; the request as the XMP property `lstudio:request`. A JPEG segment holds at most 65533 bytes: a bigger
  request goes in extended XMP (Adobe's XMP specification, part 3), split over as many APP1 segments as it needs and
  reassembled on reading (exiftool does the same); a `parameters` text over one Exif segment is cut in a JPEG's
  UserComment only. WebP chunks have no such limit. Files made up to 3b8dbe6 hold the request as the Exif
  ImageDescription (IFD0): still read.
- Never failing on size: a request over MAX_METADATA_TEXT is left out of any picture (the `parameters` text stays) and
  the writer returns a one-line note saying so.
- WAV: a `LIST`/`INFO` chunk (INAM, ICMT = parameters, ISFT) and an `lsrq` chunk holding the JSON, both appended after
  the audio data. libsndfile writes no custom chunk and silently drops *every* INFO string once one passes 2045 bytes.
- FLAC, OGG Vorbis: Vorbis comments. TITLE, COMMENT = parameters and SOFTWARE go through libsndfile (UTF-8, any
  length); a LATENT_STUDIO field with the JSON is added to the comment block, as libsndfile only knows fixed keys.
- MP3: an ID3v2.4 tag in front (TIT2, COMM = parameters, TSSE, TXXX "latent-studio" = JSON), all UTF-8. libsndfile
  (through LAME) writes ID3v2.3 that labels UTF-8 text as Latin-1, and has room for one comment only.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from studio import __version__
from studio.errors import ExportError, RequestError
from studio.files import open_regular
from studio.limits import MAX_METADATA_TEXT, check_json_depth

REQUEST_CHUNK = "latent-studio"
PARAMETERS_CHUNK = "parameters"
WAV_CHUNK = b"lsrq"
VORBIS_FIELD = "LATENT_STUDIO"


# --- pictures: writing -------------------------------------------------------------------------------------------

USER_COMMENT_TAG = 0x9286  # Exif UserComment, in the Exif sub-IFD (pointer 0x8769), where AUTOMATIC1111 reads it
EXIF_IFD_POINTER = 0x8769
UNICODE_PREFIX = b"UNICODE\0"  # the 8-byte character code of a UserComment: UCS-2/UTF-16, big-endian as written here
ASCII_PREFIX = b"ASCII\0\0\0"
JPEG_SEGMENT_BYTES = 65533  # a JPEG APPn segment's payload (its 2 length bytes count in the format's 65535)
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\0"
XMP_EXTENSION_HEADER = b"http://ns.adobe.com/xmp/extension/\0"
XMP_EXTENSION_PORTION = 65400  # bytes of extended XMP per segment, as Adobe's XMP specification (part 3) advises
XMP_NAMESPACE = "http://ns.latent-studio.org/request/1.0/"
XMP_PROPERTY = "lstudio:request"
# An XMP packet holding a request of MAX_METADATA_TEXT characters (escaping may grow `<`, `>`, `&` fivefold in a
# prompt; the request is ASCII JSON) stays under this; bigger XMP is refused on reading.
MAX_XMP_BYTES = 2 * MAX_METADATA_TEXT + (64 << 10)


def png_texts(request_json: str | None, params: str):
    """The PNG text chunks that carry `params` and the request (Pillow's PngInfo); no request chunk for None."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_CHUNK, params)
    if request_json is not None:
        info.add_text(REQUEST_CHUNK, request_json)
    return info


def user_comment(text: str) -> bytes:
    """An Exif UserComment value as AUTOMATIC1111 writes it (piexif's `UserComment.dump(text, encoding="unicode")`):
    the 8-byte "UNICODE\\0" character code, then the text in UTF-16 big-endian."""
    return UNICODE_PREFIX + text.encode("utf-16-be")


def read_user_comment(value: bytes) -> str:
    """The text of an Exif UserComment (the character codes A1111 and exiftool read: Unicode as UTF-16 BE, or a
    byte-order-marked UTF-16; ASCII; undefined as UTF-8)."""
    code, body = value[:8], value[8:]
    if code == UNICODE_PREFIX:
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16", "replace")
        return body.decode("utf-16-be", "replace")
    if code == ASCII_PREFIX:
        return body.decode("ascii", "replace")
    return body.decode("utf-8", "replace").rstrip("\0")


def exif_texts(params: str) -> bytes:
    """The Exif block (JPEG, WebP) that carries `params` as the UserComment of the Exif sub-IFD, typed UNDEFINED as
    the Exif standard (and piexif, which A1111 uses) has it; Pillow would write it as BYTE. Big-endian TIFF: IFD0
    holds only the Exif IFD pointer; the Exif IFD holds ExifVersion and UserComment."""
    comment = user_comment(params)
    exif_at = 8 + 2 + 12 + 4  # after the TIFF header and IFD0 (one entry and the next-IFD offset)
    data_at = exif_at + 2 + 2 * 12 + 4
    tiff = (b"MM\0*" + struct.pack(">I", 8)
            + struct.pack(">HHHII", 1, EXIF_IFD_POINTER, 4, 1, exif_at) + struct.pack(">I", 0)
            + struct.pack(">HHHI", 2, 0x9000, 7, 4) + b"0230"  # ExifVersion 2.3, UNDEFINED[4]
            + struct.pack(">HHII", USER_COMMENT_TAG, 7, len(comment), data_at) + struct.pack(">I", 0)
            + comment)
    return b"Exif\0\0" + tiff


def fit_parameters(params: str, max_exif_bytes: int) -> tuple[str, bool]:
    """`params`, or when its Exif block would pass `max_exif_bytes`, the text cut to fit: the settings line (the last)
    kept whole and the prompt lines before it cut, ending in "…". Whether it was cut."""
    if len(exif_texts(params)) <= max_exif_bytes:
        return params, False
    room = (max_exif_bytes - len(exif_texts(""))) // 2 * 2  # bytes of UTF-16 text

    def start(text: str, size: int) -> str:  # the longest start of `text` whose UTF-16 takes at most `size` bytes
        return text.encode("utf-16-be")[:max(0, size) // 2 * 2].decode("utf-16-be", "ignore")  # half a pair dropped

    head, newline, last = params.rpartition("\n")
    tail = "…" + newline + last
    budget = room - len(tail.encode("utf-16-be"))
    text = start(head, budget) + tail if newline and budget > 0 else start(params, room - 2) + "…"
    return text, True


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xmp_packet(request_json: str, extended: str | None = None, wrapper: bool = True) -> bytes:
    """An XMP packet with the request as `lstudio:request`; `extended` (a GUID) instead names the extended XMP that
    holds it (a JPEG's main XMP when the request is over one segment). `wrapper`: the <?xpacket?> lines."""
    if extended is not None:
        prop = f' xmlns:xmpNote="http://ns.adobe.com/xmp/note/" xmpNote:HasExtendedXMP="{extended}"/>'
    else:
        prop = f">\n   <{XMP_PROPERTY}>{_xml_escape(request_json)}</{XMP_PROPERTY}>\n  </rdf:Description>"
    body = ('<x:xmpmeta xmlns:x="adobe:ns:meta/">\n <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'\n  <rdf:Description rdf:about="" xmlns:lstudio="{XMP_NAMESPACE}"{prop}\n </rdf:RDF>\n</x:xmpmeta>')
    if wrapper:
        body = f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n{body}\n<?xpacket end="w"?>'
    return body.encode("utf-8")


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_xmp_segments(request_json: str) -> bytes:
    """The APP1 segments that carry the request in a JPEG: one standard XMP segment when it fits, else a standard one
    naming (xmpNote:HasExtendedXMP) the extended XMP that holds it, split over as many APP1 segments as it needs
    (Adobe's XMP specification, part 3: GUID = MD5 of the extended packet, full length and offset in each)."""
    packet = xmp_packet(request_json)
    if len(XMP_HEADER) + len(packet) <= JPEG_SEGMENT_BYTES - 2:
        return _segment(0xE1, XMP_HEADER + packet)
    extended = xmp_packet(request_json, wrapper=False)
    guid = hashlib.md5(extended).hexdigest().upper().encode("ascii")
    out = [_segment(0xE1, XMP_HEADER + xmp_packet("", extended=guid.decode()))]
    for offset in range(0, len(extended), XMP_EXTENSION_PORTION):
        portion = extended[offset:offset + XMP_EXTENSION_PORTION]
        out.append(_segment(0xE1, XMP_EXTENSION_HEADER + guid + struct.pack(">II", len(extended), offset) + portion))
    return b"".join(out)


def image_save_options(fmt: str, request_json: str, params: str) -> tuple[dict, list[str]]:
    """What Pillow's `save` needs to write `params` and the request into a `fmt` ("PNG", "JPEG", "WEBP") picture, and
    notes (one line each) on what could not be stored whole. Never fails on size: a request over
    MAX_METADATA_TEXT is left out (the parameters text stays); in a JPEG a `parameters` text over one Exif segment is
    cut in its UserComment (the XMP request stays whole)."""
    notes: list[str] = []
    request: str | None = request_json
    if len(request_json) > MAX_METADATA_TEXT:
        notes.append(f"the request is {len(request_json):,} characters, over the limit of {MAX_METADATA_TEXT:,} "
                     "for stored metadata: the file carries only the parameters text")
        request = None
    if fmt == "PNG":
        return {"pnginfo": png_texts(request, params)}, notes
    if fmt == "JPEG":
        params, cut = fit_parameters(params, JPEG_SEGMENT_BYTES)
        if cut:
            notes.append("the parameters text is too long for a JPEG's Exif segment: its UserComment holds it cut"
                         + (" (the full request is in the XMP)" if request is not None else ""))
        options: dict = {"exif": exif_texts(params)}
        if request is not None:
            options["extra"] = jpeg_xmp_segments(request)
        return options, notes
    options = {"exif": exif_texts(params)}
    if request is not None:
        options["xmp"] = xmp_packet(request)
    return options, notes


# --- pictures: reading ---------------------------------------------------------------------------------------------


def _too_large(what: str, size: int, limit: int, path: Path, field: str | None = None) -> RequestError:
    return RequestError(f"metadata text too large: {what} is {size:,} bytes, over the limit of {limit:,}", path, field)


def checked_request_text(text: str | None, path: str | Path, field: str = REQUEST_CHUNK) -> str | None:
    """A stored request's text when it is at most MAX_METADATA_TEXT characters and nests at most MAX_JSON_DEPTH deep
    (checked before any JSON parser runs); else a one-line RequestError naming the file and the field."""
    if not text:
        return None
    if len(text) > MAX_METADATA_TEXT:
        raise RequestError(f"metadata text too large: the stored request is {len(text):,} characters, over the "
                           f"limit of {MAX_METADATA_TEXT:,}", path, field)
    check_json_depth(text, path, field, RequestError)
    return text


def _xmp_request(xmp: bytes) -> str | None:
    """Our request in an XMP packet (element or attribute form), unescaped; read without an XML parser (no entity
    expansion, no recursion)."""
    text = xmp.decode("utf-8", "replace")
    found = re.search(r"<lstudio:request>(.*?)</lstudio:request>", text, re.S) or re.search(
        r'lstudio:request="([^"]*)"', text)
    return html.unescape(found.group(1)) if found else None


def _xmp_guid(xmp: bytes) -> bytes | None:
    found = re.search(rb'HasExtendedXMP(?:="|>)([0-9A-Fa-f]{32})', xmp)
    return found.group(1).upper() if found else None


def _legacy_description(exif: bytes | None) -> str | None:
    """The request earlier versions wrote as the Exif ImageDescription (IFD0) of a JPEG or WebP, or None (a camera's
    description is not ours: only our JSON counts)."""
    if not exif:
        return None
    from PIL import Image

    try:
        described = Image.Exif()
        described.load(exif)
        value = described.get(0x010E)
    except Exception:  # Pillow's TIFF reader raises many kinds on a broken block; an unreadable one holds nothing
        return None
    return value if isinstance(value, str) and '"model_id"' in value else None


def _jpeg_request(f: BinaryIO, path: Path) -> str | None:
    """The request in a JPEG: XMP (standard, then extended when named), else the legacy Exif ImageDescription. Walks
    the segments up to the image data, reading only XMP and Exif ones."""
    f.seek(2)
    xmp: bytes | None = None
    exif: bytes | None = None
    extended: dict[bytes, tuple[int, dict[int, bytes]]] = {}
    kept = 0
    while True:
        byte = f.read(1)
        if not byte:
            break
        if byte != b"\xff":
            raise RequestError("the JPEG's segments are damaged", path)
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker or marker in (b"\xda", b"\xd9"):  # start of scan, end of image: no metadata beyond
            break
        if 0xD0 <= marker[0] <= 0xD8 or marker[0] == 0x01:  # markers without a length
            continue
        raw = f.read(2)
        if len(raw) < 2:
            break
        length = struct.unpack(">H", raw)[0] - 2
        if length < 0:
            raise RequestError("the JPEG's segments are damaged", path)
        if marker != b"\xe1":
            f.seek(length, 1)
            continue
        payload = f.read(length)
        kept += len(payload)
        if kept > MAX_XMP_BYTES:
            raise _too_large("the JPEG's XMP and Exif metadata", kept, MAX_XMP_BYTES, path)
        if payload.startswith(XMP_HEADER) and xmp is None:
            xmp = payload[len(XMP_HEADER):]
        elif payload.startswith(XMP_EXTENSION_HEADER) and len(payload) >= len(XMP_EXTENSION_HEADER) + 40:
            at = len(XMP_EXTENSION_HEADER)
            guid = payload[at:at + 32].upper()
            full, offset = struct.unpack(">II", payload[at + 32:at + 40])
            if full > MAX_XMP_BYTES:
                raise _too_large("the JPEG's extended XMP", full, MAX_XMP_BYTES, path)
            extended.setdefault(guid, (full, {}))[1][offset] = payload[at + 40:]
        elif payload.startswith(b"Exif\0\0") and exif is None:
            exif = payload
    if xmp is not None:
        text = _xmp_request(xmp)
        named = _xmp_guid(xmp)
        if text is None and named is not None and named in extended:
            full, portions = extended[named]
            whole = bytearray(full)
            for offset, portion in portions.items():
                whole[offset:offset + len(portion)] = portion[:max(0, full - offset)]
            text = _xmp_request(bytes(whole))
        if text is not None:
            return text
    return _legacy_description(exif)


def _webp_request(f: BinaryIO, path: Path) -> str | None:
    """The request in a WebP: its "XMP " chunk, else the legacy Exif ImageDescription of its "EXIF" chunk."""
    f.seek(12)
    xmp: bytes | None = None
    exif: bytes | None = None
    while len(header := f.read(8)) == 8:
        kind, size = header[:4], struct.unpack("<I", header[4:])[0]
        if kind in (b"XMP ", b"EXIF"):
            if size > MAX_XMP_BYTES:
                raise _too_large(f"the WebP's {kind.decode().strip()} chunk", size, MAX_XMP_BYTES, path)
            data = f.read(size)
            if kind == b"XMP ":
                xmp = data
            else:
                exif = data if data.startswith(b"Exif") else b"Exif\0\0" + data
            f.seek(size & 1, 1)
        else:
            f.seek(size + (size & 1), 1)
    text = _xmp_request(xmp) if xmp is not None else None
    return text if text is not None else _legacy_description(exif)


def _png_request(path: Path) -> str | None:
    """Our text chunk in a PNG, read by Pillow with its text caps (studio.io.images), header only."""
    from studio.io.images import open_picture

    with open_picture(path) as image:
        text = image.info.get(REQUEST_CHUNK)
        if text is None and hasattr(image, "text"):
            text = image.text.get(REQUEST_CHUNK)
    return text if isinstance(text, str) else None


def stored_image_request_text(path: str | Path) -> str | None:
    """The request JSON a picture carries (PNG: the `latent-studio` text chunk; JPEG, WebP: XMP, or the Exif
    ImageDescription earlier versions wrote), or None. Reads metadata only, from a regular file, every text capped
    and depth-checked before it is parsed; RequestError naming the file otherwise."""
    from studio.io.images import open_picture

    path = Path(path)
    with open_regular(path, RequestError, what="picture") as f:
        head = f.read(16)
        try:
            if head[:2] == b"\xff\xd8":
                text = _jpeg_request(f, path)
            elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                text = _webp_request(f, path)
            else:
                text = None
        except OSError as exc:
            raise RequestError(f"cannot read: {exc.strerror or exc}", path) from None
        except (struct.error, ValueError, IndexError):
            raise RequestError("the picture's metadata is damaged", path) from None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        text = _png_request(path)
    elif text is None and not (head[:2] == b"\xff\xd8" or head[:4] == b"RIFF"):
        with open_picture(path):  # another kind of picture (no request of ours), or not a picture: say which
            pass
    return checked_request_text(text, path)


# --- sounds -----------------------------------------------------------------------------------------------------------


def software_name() -> str:
    return f"Latent Studio {__version__}"


# --- writing ----------------------------------------------------------------------------------------------------


def tag_sound(fmt: str, tmp: Path, request_json: str, params: str, title: str, path: Path) -> list[str]:
    """Write the request and `params` into the sound file `tmp` (format `fmt`: WAV, FLAC, OGG or MP3) that will
    become `path`. A request over MAX_METADATA_TEXT (which no reader would take) is left out, never failing the
    export: the one-line notes returned say so."""
    if len(request_json) > MAX_METADATA_TEXT:
        if fmt in ("WAV", "MP3"):  # FLAC and Ogg keep the parameters text libsndfile wrote
            {"WAV": _tag_wav, "MP3": _tag_mp3}[fmt](tmp, None, params, title, path)
        note = (f"the request is {len(request_json):,} characters, over the limit of {MAX_METADATA_TEXT:,} for "
                "stored metadata: the file carries only the parameters text")
        logging.getLogger(__name__).warning("%s: %s", path, note)
        return [note]
    {"WAV": _tag_wav, "FLAC": _tag_flac, "OGG": _tag_ogg, "MP3": _tag_mp3}[fmt](tmp, request_json, params, title, path)
    return []


def _riff_chunk(chunk_id: bytes, payload: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def _tag_wav(tmp: Path, request_json: str | None, params: str, title: str, path: Path) -> None:
    info = b"".join(_riff_chunk(key, text.encode() + b"\0")
                    for key, text in ((b"INAM", title), (b"ICMT", params), (b"ISFT", software_name())) if text)
    with open(tmp, "r+b") as f:
        end = f.seek(0, 2)
        f.write(b"\0" * (end & 1) + _riff_chunk(b"LIST", b"INFO" + info)
                + (_riff_chunk(WAV_CHUNK, request_json.encode()) if request_json is not None else b""))
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


def _tag_mp3(tmp: Path, request_json: str | None, params: str, title: str, path: Path) -> None:
    frames = [("TIT2", b"\x03" + title.encode()) if title else None,
              ("COMM", b"\x03eng\0" + params.encode()),
              ("TSSE", b"\x03" + software_name().encode()),
              ("TXXX", b"\x03" + REQUEST_CHUNK.encode() + b"\0" + request_json.encode()) if request_json is not None
              else None]
    tag = b"".join(name.encode() + _synchsafe(len(payload)) + b"\0\0" + payload
                   for name, payload in filter(None, frames))
    if len(tag) >= 1 << 28:
        raise ExportError("the request is too large for an ID3 tag", path)
    tmp.write_bytes(b"ID3\x04\0\0" + _synchsafe(len(tag)) + tag + tmp.read_bytes())


# --- reading the request ------------------------------------------------------------------------------------------


# The most bytes of one stored text read from a sound (our request is ASCII JSON, one byte a character); a tag over it
# is refused before it is read.
MAX_SOUND_TEXT_BYTES = MAX_METADATA_TEXT
MAX_SOUND_TAG_BYTES = MAX_METADATA_TEXT + (16 << 20)  # a FLAC comment block, an Ogg comment packet, an ID3 tag (art)


def _wav_request(f: BinaryIO, path: Path) -> str | None:
    f.seek(12)
    while len(header := f.read(8)) == 8:
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == WAV_CHUNK:
            if size > MAX_SOUND_TEXT_BYTES:
                raise _too_large(f"the WAV's {WAV_CHUNK.decode()} chunk", size, MAX_SOUND_TEXT_BYTES, path,
                                 REQUEST_CHUNK)
            return f.read(size).decode()
        f.seek(size + (size & 1), 1)
    return None


def _capped_vorbis_field(block: bytes, path: Path) -> str | None:
    value = _vorbis_field(block, VORBIS_FIELD)
    if value is not None and len(value) > MAX_METADATA_TEXT:
        raise _too_large(f"the {VORBIS_FIELD} comment", len(value.encode()), MAX_SOUND_TEXT_BYTES, path,
                         VORBIS_FIELD)
    return value


def _flac_request(f: BinaryIO, path: Path) -> str | None:
    f.seek(4)
    while len(header := f.read(4)) == 4:
        size = int.from_bytes(header[1:], "big")  # at most 16 MiB: a FLAC block's length has 24 bits
        if header[0] & 0x7F == 4:
            return _capped_vorbis_field(f.read(size), path)
        if header[0] & 0x80:
            break
        f.seek(size, 1)
    return None


def _ogg_request(f: BinaryIO, path: Path) -> str | None:
    f.seek(0)
    pages = []
    read = 0
    while True:  # the comment header is the stream's second packet: read pages until it is complete
        head = f.read(27)
        if len(head) < 27 or head[:4] != b"OggS":
            return None
        lacing = f.read(head[26])
        pages.append((0, 0, 0, 0, lacing, f.read(sum(lacing))))
        read += 27 + len(lacing) + sum(lacing)
        if read > MAX_SOUND_TAG_BYTES:
            raise _too_large("the Ogg stream's header packets", read, MAX_SOUND_TAG_BYTES, path, VORBIS_FIELD)
        try:
            (_ident, comment), _used = _header_packets(pages, 2)
        except ValueError:
            continue
        return _capped_vorbis_field(comment[7:], path) if comment.startswith(b"\x03vorbis") else None


def _id3_request(f: BinaryIO, path: Path) -> str | None:
    f.seek(0)
    header = f.read(10)
    version, flags = header[3], header[5]
    size = sum(b << (7 * (3 - i)) for i, b in enumerate(header[6:10]))
    if version not in (3, 4):
        return None
    if size > MAX_SOUND_TAG_BYTES:
        raise _too_large("the MP3's ID3 tag", size, MAX_SOUND_TAG_BYTES, path, REQUEST_CHUNK)
    tag = f.read(size)
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
                if len(value) > MAX_SOUND_TEXT_BYTES:
                    raise _too_large("the MP3's latent-studio frame", len(value), MAX_SOUND_TEXT_BYTES, path,
                                     REQUEST_CHUNK)
                return value.rstrip(b"\0").decode("utf-8" if payload[0] == 3 else "latin-1")
    return None


def stored_audio_request_text(path: str | Path) -> str | None:
    """The request JSON a sound file carries, or None. Reads metadata only, from a regular file; every tag is capped
    before it is read and the text depth-checked before it is parsed."""
    path = Path(path)
    with open_regular(path, RequestError, what="sound file") as f:
        try:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                text = _wav_request(f, path)
            elif head[:4] == b"fLaC":
                text = _flac_request(f, path)
            elif head[:4] == b"OggS":
                text = _ogg_request(f, path)
            elif head[:3] == b"ID3":
                text = _id3_request(f, path)
            else:
                import soundfile as sf

                f.seek(0)
                sf.info(f)  # a sound without our tags, or not a sound at all
                text = None
        except RuntimeError:  # libsndfile's errors
            raise RequestError("not a sound file", path) from None
        except OSError as exc:
            raise RequestError(f"cannot read: {exc.strerror or exc}", path) from None
        except (struct.error, ValueError, IndexError):  # UnicodeDecodeError is a ValueError
            raise RequestError("the sound file's metadata is damaged", path) from None
    return checked_request_text(text, path)
