"""Unit tests for labeling.image_checks: every fixture is built here in memory."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib

import pytest
from PIL import Image, ImageCms, ImageFile

from labeling import image_checks
from labeling.image_checks import CleanImage, ImageRejected, check_and_clean

MB = 1024 * 1024
MAX_BYTES = 20 * MB
MAX_PIXELS = 40_000_000

UNSUPPORTED = "Unsupported file type: only JPEG, PNG and WebP images are accepted."
UNDECODABLE = "The image could not be decoded: the file is damaged or truncated."
TOO_MANY_PIXELS = "Image too large (max 40 megapixels)."

RED, BLUE = (220, 20, 20), (20, 20, 220)


# --- helpers -----------------------------------------------------------------


def upload(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg"):
    """A file-like object shaped like a Django upload (name + content type),
    so the tests show that neither is trusted."""
    f = io.BytesIO(data)
    f.name = name
    f.content_type = content_type
    return f


def check(data: bytes, **kwargs) -> CleanImage:
    kwargs.setdefault("max_bytes", MAX_BYTES)
    kwargs.setdefault("max_pixels", MAX_PIXELS)
    return check_and_clean(upload(data), **kwargs)


def refusal(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as excinfo:
        check(data, **kwargs)
    return excinfo.value.message


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def photo(size=(64, 48), colour=(30, 140, 60), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def noisy_jpeg(size=(256, 256)) -> bytes:
    # Random pixels so the entropy-coded data is large and a cut lands
    # in the middle of it.
    img = Image.effect_noise(size, 80).convert("RGB")
    return encode(img, "JPEG", quality=90)


def reopen(clean: CleanImage) -> Image.Image:
    img = Image.open(io.BytesIO(clean.content))
    img.load()
    return img


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def blank_bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG, streamed through zlib so that even the
    20000x20000 one never exists uncompressed in memory."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = max(1, MB // len(row))
    idat = []
    for start in range(0, height, rows_per_block):
        idat.append(compressor.compress(row * min(rows_per_block, height - start)))
    idat.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"".join(idat))
        + png_chunk(b"IEND", b"")
    )


def forbid_decoding(monkeypatch):
    def refuse_to_decode(self, *args, **kwargs):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    monkeypatch.setattr(Image.Image, "load", refuse_to_decode)


def assert_colour_close(actual, expected, tolerance=30):
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected)), (
        actual,
        expected,
    )


# --- accepted images -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "extension"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")]
)
def test_valid_image_is_accepted_with_extension_and_size(fmt, extension):
    original = encode(photo((64, 48)), fmt)

    clean = check(original)

    assert clean.extension == extension
    assert (clean.width, clean.height) == (64, 48)
    assert reopen(clean).format == fmt
    assert reopen(clean).size == (64, 48)


def test_extension_follows_the_content_not_the_file_name():
    png_bytes = encode(photo(), "PNG")

    clean = check_and_clean(
        upload(png_bytes, name="holiday.jpg", content_type="image/jpeg"),
        max_bytes=MAX_BYTES,
        max_pixels=MAX_PIXELS,
    )

    assert clean.extension == "png"


def test_sha256_is_of_the_original_upload_not_the_re_encoding():
    original = encode(photo(), "JPEG", quality=70)

    clean = check(original)

    assert clean.sha256 == hashlib.sha256(original).hexdigest()
    assert clean.sha256 != hashlib.sha256(clean.content).hexdigest()


def test_upload_already_read_by_form_validation_is_read_from_the_start():
    original = encode(photo(), "PNG")
    f = upload(original)
    f.read()

    clean = check_and_clean(f, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)

    assert clean.sha256 == hashlib.sha256(original).hexdigest()


def test_multi_picture_jpeg_from_a_phone_is_accepted_as_jpg():
    first, second = photo(colour=RED), photo(colour=BLUE)
    mpo = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(mpo)).format == "MPO"

    clean = check(mpo)

    assert clean.extension == "jpg"
    result = reopen(clean)
    assert result.format == "JPEG"
    assert_colour_close(result.getpixel((10, 10)), RED)


def test_cmyk_jpeg_comes_back_as_rgb():
    clean = check(encode(photo(mode="CMYK", colour=(0, 0, 0, 0)), "JPEG"))

    result = reopen(clean)
    assert result.mode == "RGB"
    assert_colour_close(result.getpixel((5, 5)), (255, 255, 255))


def test_greyscale_jpeg_comes_back_as_rgb():
    assert reopen(check(encode(photo(mode="L", colour=90), "JPEG"))).mode == "RGB"


def test_transparent_png_keeps_its_alpha():
    clean = check(encode(photo(mode="RGBA", colour=(10, 200, 10, 0)), "PNG"))

    result = reopen(clean)
    assert result.mode == "RGBA"
    assert result.getpixel((0, 0))[3] == 0


def test_palette_png_with_transparency_becomes_rgba():
    img = photo(mode="P", colour=3)
    img.putpalette([0, 0, 0] * 3 + [200, 10, 10] + [0, 0, 0] * 252)
    original = encode(img, "PNG", transparency=3)

    assert reopen(check(original)).mode == "RGBA"


def test_greyscale_png_stays_greyscale():
    assert reopen(check(encode(photo(mode="L", colour=90), "PNG"))).mode == "L"


def test_sixteen_bit_grey_png_is_scaled_not_clipped_to_white():
    original = encode(Image.new("I;16", (8, 8), 40000), "PNG")

    result = reopen(check(original))

    assert result.mode == "L"
    assert result.getpixel((0, 0)) == 40000 // 256


def test_transparent_webp_keeps_its_alpha():
    original = encode(photo(mode="RGBA", colour=(10, 200, 10, 0)), "WEBP")

    assert reopen(check(original)).mode == "RGBA"


def test_rgb_colour_profile_is_kept_so_colours_do_not_shift():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = encode(photo(), "JPEG", icc_profile=srgb)

    assert reopen(check(original)).info.get("icc_profile") == srgb


def test_transparent_pixels_are_flattened_on_white_for_jpeg_output():
    rgba = photo(mode="RGBA", colour=(0, 0, 0, 0))

    flat = image_checks._to_output_mode(rgba, "jpg")

    assert flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == (255, 255, 255)


# --- size limit ------------------------------------------------------------------


def test_empty_file_is_refused():
    assert refusal(b"") == "The file is empty."


def test_upload_over_twenty_megabytes_is_refused():
    too_big = b"\xff\xd8\xff" + b"\x00" * (21 * MB)

    assert refusal(too_big, max_bytes=20 * MB) == "File too large (max 20 MB)."


def test_oversized_upload_is_not_read_beyond_the_limit():
    f = upload(b"\xff\xd8\xff" + b"\x00" * (21 * MB))

    with pytest.raises(ImageRejected):
        check_and_clean(f, max_bytes=20 * MB, max_pixels=MAX_PIXELS)

    assert f.tell() == 20 * MB + 1


def test_upload_exactly_at_the_limit_passes_the_size_check():
    original = encode(photo(), "PNG")

    clean = check(original, max_bytes=len(original))

    assert clean.extension == "png"


def test_size_message_follows_the_configured_limit():
    assert refusal(b"\xff\xd8\xff" + b"\x00" * (2 * MB), max_bytes=1536 * 1024) == (
        "File too large (max 1.5 MB)."
    )
    assert refusal(b"\xff\xd8\xff" + b"\x00" * (6 * MB), max_bytes=5 * MB) == (
        "File too large (max 5 MB)."
    )


# --- format ----------------------------------------------------------------------


def test_html_named_jpg_is_refused():
    html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"

    with pytest.raises(ImageRejected) as excinfo:
        check_and_clean(
            upload(html, name="photo.jpg", content_type="image/jpeg"),
            max_bytes=MAX_BYTES,
            max_pixels=MAX_PIXELS,
        )

    assert excinfo.value.message == UNSUPPORTED


NOT_IMAGES_WE_ACCEPT = {
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
    b'onload="alert(1)"><rect width="10" height="10"/></svg>',
    "svg_without_xml_declaration": b'<svg xmlns="http://www.w3.org/2000/svg"></svg>',
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "psd": b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10"
    b"\x00\x08\x00\x03" + b"\x00" * 64,
    "fits": b"SIMPLE  =                    T".ljust(80)
    + b"BITPIX  =                    8".ljust(80)
    + b"END".ljust(80),
    "pdf": b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n",
    "text": b"just some text that someone renamed to photo.png\n",
}


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES_WE_ACCEPT))
def test_non_image_file_is_refused_as_unsupported(kind):
    assert refusal(NOT_IMAGES_WE_ACCEPT[kind]) == UNSUPPORTED


def test_gif_is_refused_even_though_it_is_a_real_image():
    gif = encode(photo(), "GIF")
    assert Image.open(io.BytesIO(gif)).format == "GIF"

    assert refusal(gif) == UNSUPPORTED


@pytest.mark.parametrize("fmt", ["TIFF", "BMP"])
def test_other_real_image_formats_are_refused(fmt):
    assert refusal(encode(photo(), fmt)) == UNSUPPORTED


def test_png_header_followed_by_html_is_refused():
    fake = b"\x89PNG\r\n\x1a\n<html><body><script>alert(1)</script></body></html>"

    assert refusal(fake) == UNDECODABLE


def test_jpeg_magic_followed_by_html_is_refused():
    assert refusal(b"\xff\xd8\xff<html><script>alert(1)</script></html>") == (
        UNDECODABLE
    )


def test_webp_container_with_junk_inside_is_refused():
    assert refusal(b"RIFF\x40\x00\x00\x00WEBP<html>" + b"x" * 60) == UNDECODABLE


def test_html_appended_to_a_valid_png_does_not_survive():
    # The image itself is fine, so it is accepted; the re-encoding keeps
    # only the pixels, so the appended payload never reaches storage.
    polyglot = encode(photo(), "PNG") + b"<html><script>alert(1)</script></html>"

    clean = check(polyglot)

    assert b"<script" not in clean.content
    assert b"<html" not in clean.content


# --- pixel limit -----------------------------------------------------------------


def test_ten_thousand_square_png_is_refused_before_decoding(monkeypatch):
    bomb = blank_bilevel_png(10_000, 10_000)
    assert len(bomb) < 20 * 1024  # ~12 KB on disk, 100 megapixels inside
    forbid_decoding(monkeypatch)

    started = time.perf_counter()
    message = refusal(bomb)

    assert message == TOO_MANY_PIXELS
    assert time.perf_counter() - started < 1.0


def test_twenty_thousand_square_png_is_refused_with_our_message(monkeypatch):
    # 400 megapixels is also past Pillow's own DecompressionBombError limit;
    # the user must still see our message, not Pillow's.
    bomb = blank_bilevel_png(20_000, 20_000)
    assert len(bomb) < 100 * 1024
    forbid_decoding(monkeypatch)

    assert refusal(bomb) == TOO_MANY_PIXELS


def test_pixel_bomb_is_refused_even_when_warnings_are_errors(monkeypatch):
    forbid_decoding(monkeypatch)
    bomb = blank_bilevel_png(10_000, 10_000)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert refusal(bomb) == TOO_MANY_PIXELS


def test_pixel_message_follows_the_configured_limit():
    original = encode(photo((100, 100)), "PNG")

    assert refusal(original, max_pixels=9_999) == (
        "Image too large (max 0.009999 megapixels)."
    )
    assert check(original, max_pixels=10_000).width == 100


def test_huge_webp_is_refused_from_its_header_before_pillow_opens_it(monkeypatch):
    small = encode(photo((8, 8)), "WEBP", lossless=True)
    assert small[12:16] == b"VP8L"
    (bits,) = struct.unpack_from("<I", small, 21)
    bits = (bits & ~0x0FFFFFFF) | (10_000 - 1) | ((10_000 - 1) << 14)
    bomb = small[:21] + struct.pack("<I", bits) + small[25:]

    def no_open(*args, **kwargs):
        raise AssertionError("Image.open was called before the size check")

    monkeypatch.setattr(Image, "open", no_open)

    assert refusal(bomb) == TOO_MANY_PIXELS


@pytest.mark.parametrize("lossless", [False, True])
def test_webp_header_size_matches_what_pillow_reports(lossless):
    original = encode(photo((123, 45)), "WEBP", lossless=lossless)

    assert image_checks._webp_header_size(original) == (123, 45)


def test_extended_webp_header_size_matches_what_pillow_reports():
    original = encode(photo((123, 45), mode="RGBA", colour=(1, 2, 3, 4)), "WEBP")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    extended = encode(photo((123, 45)), "WEBP", icc_profile=srgb)
    assert extended[12:16] == b"VP8X"

    assert image_checks._webp_header_size(original) == (123, 45)
    assert image_checks._webp_header_size(extended) == (123, 45)


# --- decoding ------------------------------------------------------------------


def test_jpeg_cut_in_half_is_refused():
    whole = noisy_jpeg()
    check(whole)  # sanity: the uncut file is fine

    assert refusal(whole[: len(whole) // 2]) == UNDECODABLE


def test_truncated_jpeg_is_refused_even_if_someone_enabled_truncated_loading(
    monkeypatch,
):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    whole = noisy_jpeg()

    assert refusal(whole[: len(whole) // 2]) == UNDECODABLE


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_short_but_ended_with_an_end_of_image_marker_is_refused(progressive):
    # Pillow would pad the missing rows with grey and accept it.
    whole = encode(Image.effect_noise((256, 256), 80).convert("RGB"), "JPEG", quality=90, progressive=progressive)

    assert refusal(whole[: len(whole) // 3] + b"\xff\xd9") == UNDECODABLE


def test_small_jpeg_whose_header_claims_a_huge_picture_is_refused():
    data = bytearray(encode(photo((16, 16)), "JPEG"))
    frame = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, 6000, 6000)  # height, width of the frame header

    assert refusal(bytes(data)) == UNDECODABLE


def test_jpeg_with_extraneous_bytes_before_its_end_marker_is_still_accepted():
    # libjpeg warns about these, but every pixel is intact; some cameras write them.
    whole = noisy_jpeg()
    padded = whole[:-2] + b"\x00\x00\x00" + whole[-2:]

    assert check(padded).width == 256


def test_png_cut_in_half_is_refused():
    whole = encode(Image.effect_noise((128, 128), 80), "PNG")

    assert refusal(whole[: len(whole) // 2]) == UNDECODABLE


def test_webp_cut_in_half_is_refused():
    whole = encode(Image.effect_noise((128, 128), 80).convert("RGB"), "WEBP")

    assert refusal(whole[: len(whole) // 2]) == UNDECODABLE


# --- orientation and metadata ----------------------------------------------------


def sideways_portrait_jpeg() -> bytes:
    """A 40x60 portrait (red top, blue bottom) stored sideways as 60x40 with
    EXIF orientation 6, the way phones save photos taken held upright."""
    upright = Image.new("RGB", (40, 60), BLUE)
    upright.paste(RED, (0, 0, 40, 30))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return encode(stored, "JPEG", quality=95, exif=exif)


def test_exif_orientation_is_applied_to_the_pixels():
    original = sideways_portrait_jpeg()
    assert Image.open(io.BytesIO(original)).size == (60, 40)

    clean = check(original)

    assert (clean.width, clean.height) == (40, 60)
    result = reopen(clean)
    assert result.size == (40, 60)
    assert_colour_close(result.getpixel((20, 5)), RED)
    assert_colour_close(result.getpixel((20, 55)), BLUE)


def test_rotated_photo_comes_back_without_an_orientation_tag():
    result = reopen(check(sideways_portrait_jpeg()))

    assert 0x0112 not in result.getexif()
    assert len(result.getexif()) == 0
    assert "exif" not in result.info


def located_jpeg() -> bytes:
    """A JPEG with GPS coordinates in EXIF, a camera model, an XMP packet
    repeating the location, and a comment."""
    exif = Image.Exif()
    exif[0x0110] = "Pixel 8 Pro"  # Model
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (52.0, 22.0, 30.5)
    gps[3] = "E"
    gps[4] = (4.0, 53.0, 12.25)
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        b'exif:GPSLatitude="52,22.5N" exif:GPSLongitude="4,53.2E"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    return encode(photo(), "JPEG", exif=exif, xmp=xmp, comment=b"home address")


def test_located_fixture_really_carries_gps_and_xmp():
    img = Image.open(io.BytesIO(located_jpeg()))

    assert img.getexif().get_ifd(0x8825)[1] == "N"
    assert b"GPSLatitude" in img.info["xmp"]
    assert img.info["comment"] == b"home address"


def test_gps_exif_and_xmp_are_stripped_from_jpeg():
    clean = check(located_jpeg())

    result = reopen(clean)
    assert len(result.getexif()) == 0
    assert result.getexif().get_ifd(0x8825) == {}
    assert "exif" not in result.info
    assert "xmp" not in result.info
    assert "comment" not in result.info
    assert b"GPS" not in clean.content
    assert b"Exif" not in clean.content
    assert b"http://ns.adobe.com/xap/1.0/" not in clean.content
    assert b"Pixel 8 Pro" not in clean.content
    assert b"home address" not in clean.content


def test_text_exif_and_xmp_chunks_are_stripped_from_png():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at home")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>exif:GPSLatitude</x:xmpmeta>")
    exif = Image.Exif()
    exif.get_ifd(0x8825)[1] = "N"
    original = encode(photo(), "PNG", pnginfo=info, exif=exif)
    assert b"taken at home" in original

    clean = check(original)

    result = reopen(clean)
    assert len(result.getexif()) == 0
    assert "Comment" not in result.info
    assert "xmp" not in result.info
    assert b"taken at home" not in clean.content
    assert b"GPS" not in clean.content
    for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf"):
        assert chunk not in clean.content


def test_exif_and_xmp_are_stripped_from_webp():
    exif = Image.Exif()
    exif.get_ifd(0x8825)[1] = "N"
    xmp = b"<x:xmpmeta>exif:GPSLatitude</x:xmpmeta>"
    original = encode(photo(), "WEBP", exif=exif, xmp=xmp)
    assert b"GPSLatitude" in original

    clean = check(original)

    result = reopen(clean)
    assert len(result.getexif()) == 0
    assert "xmp" not in result.info
    assert b"GPS" not in clean.content
    assert b"EXIF" not in clean.content
    assert b"XMP " not in clean.content
