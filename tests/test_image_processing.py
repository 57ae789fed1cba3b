import numpy as np
import pytest
import torch
from PIL import Image

from finpercep_hf import FinPercepImageProcessor
from finpercep_hf.images import FinPercepImageError, list_images, load_image


@pytest.fixture
def gradient_rgb():
    x = np.linspace(0, 255, 24, dtype=np.uint8)
    return np.stack([np.tile(x, (16, 1)), np.tile(x[::-1], (16, 1)), np.full((16, 24), 128, np.uint8)], axis=-1)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "RGB"])
def test_modes_convert_to_rgb_in_unit_range(gradient_rgb, mode):
    image = Image.fromarray(gradient_rgb)
    if mode == "I;16":
        image = Image.fromarray(gradient_rgb[..., 0].astype(np.uint16) * 257)
    else:
        image = image.convert(mode)
    pixel_values = FinPercepImageProcessor()(image)["pixel_values"]
    assert pixel_values.shape == (1, 3, 16, 24) and pixel_values.dtype == torch.float32
    assert 0 <= pixel_values.min() and pixel_values.max() <= 1
    if mode in ("L", "I;16"):  # gray: equal channels
        torch.testing.assert_close(pixel_values[0, 0], pixel_values[0, 1])
    if mode == "I;16":  # 16-bit range mapped onto [0, 1], not clipped at 255
        assert pixel_values.max() == pytest.approx(1.0, abs=1 / 255) and pixel_values.min() == 0


def test_sixteen_bit_png_scaled_by_its_depth(tmp_path):
    array = np.full((8, 8), 32768, dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "half.png")
    image = load_image(tmp_path / "half.png")
    assert image.mode == "RGB"
    assert np.asarray(image)[0, 0, 0] == round(32768 / 65535 * 255)


def test_rgba_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert FinPercepImageProcessor()(rgba)["pixel_values"].min() == 1.0


def test_numpy_and_tensor_inputs_agree(gradient_rgb):
    processor = FinPercepImageProcessor()
    from_uint8 = processor(gradient_rgb)["pixel_values"]
    from_float = processor(gradient_rgb.astype(np.float32) / 255)["pixel_values"]
    from_tensor = processor(torch.from_numpy(gradient_rgb).permute(2, 0, 1).float() / 255)["pixel_values"]
    from_pil = processor(Image.fromarray(gradient_rgb))["pixel_values"]
    for other in (from_float, from_tensor, from_pil):
        torch.testing.assert_close(other, from_uint8)


def test_resize_short_side_and_pad():
    processor = FinPercepImageProcessor(do_resize=True, shortest_edge=20, do_pad=True, pad_multiple=16)
    pixel_values = processor(np.zeros((10, 30, 3), np.uint8))["pixel_values"]
    assert pixel_values.shape == (1, 3, 32, 64)  # 20x60 padded to multiples of 16


def test_bad_files_raise_naming_the_file(tmp_path, gradient_rgb):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image")
    Image.fromarray(gradient_rgb).resize((200, 200)).save(tmp_path / "full.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:300])
    for path, message in ((empty, "empty"), (junk, "not a readable image"), (truncated, "truncated")):
        with pytest.raises(FinPercepImageError, match=message) as info:
            FinPercepImageProcessor()(str(path))
        assert path.name in str(info.value)
    with pytest.raises(FinPercepImageError, match="no such image"):
        load_image(tmp_path / "missing.png")


def test_bad_tensors_raise():
    processor = FinPercepImageProcessor()
    nan = torch.rand(3, 8, 8)
    nan[1, 2, 2] = float("nan")
    with pytest.raises(FinPercepImageError, match="NaN"):
        processor(nan)
    with pytest.raises(FinPercepImageError, match=r"\[0, 1\]"):
        processor(torch.rand(3, 8, 8) * 255)
    with pytest.raises(FinPercepImageError, match="share a size"):
        processor([torch.rand(3, 8, 8), torch.rand(3, 8, 9)])


def test_list_images_expands_directories(tmp_path, gradient_rgb):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg", "notes.txt"):
        target = tmp_path / name
        if name.endswith("txt"):
            target.write_text("x")
        else:
            Image.fromarray(gradient_rgb).save(target)
    assert [p.name for p in list_images([tmp_path])] == ["b.png", "a.jpg"]
