"""Check and sanitise an uploaded photo before anything is stored.

This module is the single gate every upload passes through. It never trusts
the file name or the client's content type: the format comes from the bytes,
the size limits are enforced before Pillow allocates anything, and what comes
out is a fresh encoding of the pixels only, so no metadata (GPS, XMP, comments,
text chunks) and no smuggled payload (HTML/script appended to an image) can
survive into storage.

No Django imports: limits are passed in by the caller (views/forms read them
from settings).
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps

JPEG_QUALITY = 92
WEBP_QUALITY = 92

UNSUPPORTED_TYPE = "Unsupported file type: only JPEG, PNG and WebP images are accepted."
UNDECODABLE = "The image could not be decoded: the file is damaged or truncated."

# Magic-byte signature -> our extension. WebP is checked separately because
# its signature has the file length in the middle ("RIFF" <size> "WEBP").
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Pillow format names that are acceptable for each extension. A JPEG from a
# phone that carries extra pictures (depth map, preview) opens as "MPO"; it
# is still a JPEG and its first frame is the photo.
_PILLOW_FORMATS = {"jpg": {"JPEG", "MPO"}, "png": {"PNG"}, "webp": {"WEBP"}}
_PILLOW_OPENER = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}

# Everything Pillow's decoders are known to raise on malformed input.
_DECODE_ERRORS = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # Pillow's plugins signal a broken structure this way
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
)

_SIXTEEN_BIT_GREY = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class ImageRejected(Exception):
    """The upload is not an acceptable photo; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CleanImage:
    content: bytes  # the re-encoded sanitised image bytes
    extension: str  # "jpg" | "png" | "webp"
    width: int
    height: int
    sha256: str  # hex sha256 of the ORIGINAL uploaded bytes


def check_and_clean(fileobj, *, max_bytes: int, max_pixels: int) -> CleanImage:
    """Validate an uploaded image and return a metadata-free re-encoding.

    Raises ImageRejected with a human-readable message if the upload is too
    big, not a JPEG/PNG/WebP, has too many pixels, or cannot be decoded.
    """
    data = read_limited(fileobj, max_bytes)
    extension = _sniff_extension(data)
    if extension == "webp":
        # Pillow's WebP opener allocates the whole canvas while opening, so
        # the pixel limit has to be applied to the raw header first.
        _check_pixels(_webp_header_size(data), max_pixels)
    img = _open_header(data, extension, max_pixels)
    # Image.open has only parsed the header here; checking the pixel count
    # now means a tiny file claiming 20000x20000 is refused before a single
    # byte of pixel memory is allocated.
    _check_pixels(img.size, max_pixels)
    if extension == "jpg":
        _check_jpeg_data(data)
    _decode(img, max_pixels)
    pixels = _upright(img)
    content = _encode(pixels, extension, img.info.get("icc_profile"))
    return CleanImage(
        content=content,
        extension=extension,
        width=pixels.width,
        height=pixels.height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


# --- 1. size ---------------------------------------------------------------


def read_limited(fileobj, max_bytes: int) -> bytes:
    """Read at most max_bytes + 1 bytes: enough to know the file is too big
    without pulling an arbitrarily large upload into memory. ImageRejected when
    it is empty or too big."""
    _rewind(fileobj)
    chunks, remaining = [], max_bytes + 1
    while remaining > 0:
        chunk = fileobj.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = b"".join(chunks)
    if not data:
        raise ImageRejected("The file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(f"File too large (max {_megabytes(max_bytes)} MB).")
    return data


def _rewind(fileobj) -> None:
    # Django form validation (ImageField) may already have read the upload,
    # leaving the position at the end; a non-seekable stream is read as is.
    try:
        fileobj.seek(0)
    except (AttributeError, OSError, ValueError):
        pass


def _megabytes(num_bytes: int) -> str:
    return f"{round(num_bytes / (1024 * 1024), 1):g}"


# --- 2. format -------------------------------------------------------------


def _sniff_extension(data: bytes) -> str:
    """Decide the format from the leading bytes only; names and client
    content types are attacker-controlled and never consulted."""
    if data.startswith(_JPEG_MAGIC):
        return "jpg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise ImageRejected(UNSUPPORTED_TYPE)


def _open_header(data: bytes, extension: str, max_pixels: int) -> Image.Image:
    """Parse the header with the one Pillow plugin the magic bytes named, so
    no other (less hardened) plugin ever gets a look at the upload."""
    try:
        # Our own pixel check follows immediately; Pillow's bomb warning would
        # only duplicate it (and become an exception under `-W error`).
        # catch_warnings is process-global before Python 3.14; a race can at
        # worst leave this one harmless warning category silenced.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[_PILLOW_OPENER[extension]])
    except Image.DecompressionBombError:
        # Pillow's own hard limit fired first; report it in our words.
        raise ImageRejected(_too_many_pixels(max_pixels)) from None
    except _DECODE_ERRORS:
        raise ImageRejected(UNDECODABLE) from None
    if img.format not in _PILLOW_FORMATS[extension]:
        raise ImageRejected(UNSUPPORTED_TYPE)
    return img


# --- 3. pixel count --------------------------------------------------------


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(_too_many_pixels(max_pixels))


def _too_many_pixels(max_pixels: int) -> str:
    return f"Image too large (max {max_pixels / 1e6:g} megapixels)."


def _webp_header_size(data: bytes) -> tuple[int, int]:
    """Canvas size from the first WebP chunk header, without decoding.

    A WebP file's first chunk is always VP8 (lossy), VP8L (lossless) or VP8X
    (extended); anything else is not a WebP we can read.
    """
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise ImageRejected(UNDECODABLE)


# --- 4. decode -------------------------------------------------------------

# libjpeg's warnings that mean pixels are missing or made up: it pads a scan that ends early
# with grey, or guesses past bad data, and goes on. Its other warnings (extraneous bytes before
# a marker, a bad ICC marker) leave every pixel as it was encoded, and real cameras write them.
_JPEG_DATA_LOST = ("premature end", "bad huffman code", "bad arithmetic code", "instead of rst")


def _check_jpeg_data(data: bytes) -> None:
    """Refuse a JPEG whose compressed data is cut short or damaged.

    Pillow refuses a JPEG that simply stops, but not one whose data ends early and is followed
    by an end-of-image marker: libjpeg only warns ("premature end of data segment"), Pillow
    never shows its warnings, and the rest of the picture comes out grey (a 633-byte file whose
    header claimed 6000x6000 became a 36-megapixel grey photo). libjpeg-turbo through simplejpeg
    in strict mode raises those warnings instead. It decodes at 1/8 scale in grey: every byte of
    the compressed data is still read, but the full-size pixels are not built twice.
    """
    import simplejpeg

    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "GRAY",
                               strict=True, min_factor=8)
    except ValueError as exc:
        if any(sign in str(exc).lower() for sign in _JPEG_DATA_LOST):
            raise ImageRejected(UNDECODABLE) from None
        # Anything else is for Pillow's own decoder to accept or refuse, as before.


def _decode(img: Image.Image, max_pixels: int) -> None:
    """Decode every pixel so damaged or truncated files are refused now,
    not when someone later opens the stored photo."""
    # The flag is process-global; a truncated upload must never be padded
    # with grey and accepted, whatever some other code may have set.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img.load()
    except Image.DecompressionBombError:
        raise ImageRejected(_too_many_pixels(max_pixels)) from None
    except _DECODE_ERRORS:
        raise ImageRejected(UNDECODABLE) from None


# --- 5. orientation and re-encoding ---------------------------------------


def _upright(img: Image.Image) -> Image.Image:
    """Bake the EXIF orientation into the pixels, since the tag itself is
    about to be thrown away with the rest of the metadata."""
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except _DECODE_ERRORS:
        # Broken EXIF should not cost the user their photo; keep it as stored.
        pass
    return img


def _encode(img: Image.Image, extension: str, icc_profile: bytes | None) -> bytes:
    pixels = _fresh_copy(_to_output_mode(img, extension))
    options: dict = {}
    if icc_profile and _icc_matches(icc_profile, pixels.mode):
        # A colour profile is not personal data, and dropping it would shift
        # the colours of e.g. Display P3 phone photos.
        options["icc_profile"] = icc_profile
    if extension == "jpg":
        options.update(format="JPEG", quality=JPEG_QUALITY, optimize=True)
    elif extension == "png":
        options.update(format="PNG", optimize=True)
    else:
        options.update(format="WEBP", quality=WEBP_QUALITY)
    out = io.BytesIO()
    pixels.save(out, **options)
    return out.getvalue()


def _fresh_copy(img: Image.Image) -> Image.Image:
    """Copy the pixels into a brand-new image with an empty ``info``.

    Pillow's encoders pick some metadata up from the source image by default
    (JPEG comments, PNG text/ICC/transparency); starting from a blank image
    guarantees nothing but pixels is re-encoded.
    """
    fresh = Image.new(img.mode, img.size)
    fresh.paste(img)
    return fresh


def _to_output_mode(img: Image.Image, extension: str) -> Image.Image:
    """JPEG gets RGB; PNG keeps L/RGB/RGBA; WebP gets RGB or RGBA."""
    if img.mode in _SIXTEEN_BIT_GREY:
        grey = _grey16_to_grey8(img)
        return grey if extension == "png" else grey.convert("RGB")
    if img.has_transparency_data:
        rgba = _as_mode(img, "RGBA")
        return _flatten_on_white(rgba) if extension == "jpg" else rgba
    if extension == "png" and img.mode in ("1", "L"):
        return _as_mode(img, "L")
    return _as_mode(img, "RGB")  # CMYK, P, L (for JPEG/WebP), ...


def _as_mode(img: Image.Image, mode: str) -> Image.Image:
    return img if img.mode == mode else img.convert(mode)


def _grey16_to_grey8(img: Image.Image) -> Image.Image:
    # convert("L") clips 16-bit values at 255 (an almost white image);
    # scale to 8 bits first.
    return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    # JPEG has no alpha; transparent areas become white rather than black.
    # Defensive: a JPEG source never has alpha, but keep JPEG output correct.
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _icc_matches(icc_profile: bytes, mode: str) -> bool:
    # Bytes 16-19 of an ICC header name its colour space; a CMYK or grey
    # profile attached to converted RGB pixels would render wrong colours.
    space = icc_profile[16:20]
    return (space == b"RGB " and mode in ("RGB", "RGBA")) or (
        space == b"GRAY" and mode == "L"
    )


def working_copy(clean, max_side: int) -> bytes | None:
    """A JPEG of the cleaned image with its longer side at most `max_side`, or None when the image
    is no larger than that already (the original is then what the model reads).

    The model sees at most about image_size x 1.14 pixels, so 1024 px loses nothing it uses.
    `clean` is what check_and_clean returned: already upright, metadata-free and decodable.
    """
    if max(clean.width, clean.height) <= max_side:
        return None
    im = Image.open(io.BytesIO(clean.content))
    scale = max_side / max(im.width, im.height)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    # A JPEG is decoded at a reduced DCT scale that keeps at least twice the final size, so that
    # the LANCZOS filter still has full detail to work from (thumbnail's own reducing_gap).
    im.draft("RGB", (2 * size[0], 2 * size[1]))
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")  # the cleaned PNG/WebP may carry alpha; JPEG has none
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=None)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
