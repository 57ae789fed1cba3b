"""Bad inputs and outputs of the ``finpercep`` sub-commands: decompression bombs, huge images, overlay names,
output-directory problems, exit codes."""

import errno
import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from finpercep_hf.cli import build_parser, main
from finpercep_hf.commands import score
from finpercep_hf.commands.outputs import relative_output_names


def write_bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid-looking PNG (a few dozen bytes) whose header claims ``side`` x ``side`` RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    payload = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )
    path.write_bytes(payload)
    return path


@pytest.fixture
def photo_dirs(skimage_photos, tmp_path):
    """a/coffee.png, b/coffee.png (another photo, same name), b/rocket.png and a 20000x20000 bomb PNG."""
    for folder, name, photo in (("a", "coffee", "coffee"), ("b", "coffee", "chelsea"), ("b", "rocket", "rocket")):
        (tmp_path / "in" / folder).mkdir(parents=True, exist_ok=True)
        skimage_photos[photo].save(tmp_path / "in" / folder / f"{name}.png")
    write_bomb_png(tmp_path / "in" / "bomb.png")
    return tmp_path / "in"


def test_bomb_is_a_bad_file_the_rest_scored_and_same_names_keep_their_folders(
    tiny_rm1_dir, photo_dirs, tmp_path, capsys
):
    assert (photo_dirs / "bomb.png").stat().st_size < 100
    out = tmp_path / "out"
    assert main(["score", "--images", str(photo_dirs), "--model", str(tiny_rm1_dir), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bomb.png" in errors[0] and "decompression bomb" in errors[0]
    assert "Traceback" not in captured.err
    saved = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert sorted(record["overlay"] for record in saved) == [
        "a/coffee_pdm.png",
        "b/coffee_pdm.png",
        "b/rocket_pdm.png",
    ]
    scores = {record["overlay"]: record["score"] for record in saved}
    assert scores["a/coffee_pdm.png"] != scores["b/coffee_pdm.png"]  # two photos, two overlays
    assert all((out / name).is_file() for name in scores)


def test_relative_output_names_are_unique():
    names = relative_output_names(["/data/a/x.png", "/data/b/x.png", "/data/b/x.jpg", "skimage:coffee"])
    assert [str(path) for path in names.values()] == ["a/x", "b/x_png", "b/x_jpg", "coffee"]
    assert [str(path) for path in relative_output_names(["/data/a/x.png"]).values()] == ["x"]


def test_images_over_max_pixels_are_downscaled_with_a_note(tiny_rm1_dir, skimage_photos, tmp_path, capsys):
    skimage_photos["rocket"].save(tmp_path / "rocket.png")  # 200x160
    args = ["score", "--images", str(tmp_path / "rocket.png"), "--model", str(tiny_rm1_dir)]
    assert main([*args, "--max_pixels", "8000"]) == 0
    captured = capsys.readouterr()
    assert "rocket.png is 200x160, over --max_pixels 8000: scored at 100x80." in captured.err
    small = json.loads(captured.out)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["score"] != small["score"]  # the default keeps 200x160 as it is
    assert main([*args, "--max_pixels", "-1"]) == 2
    assert "--max_pixels must be >= 0" in capsys.readouterr().err


def test_evaluate_refuses_images_over_max_pixels(skimage_photos, tmp_path, capsys):
    for folder in ("sr", "gt"):
        (tmp_path / folder).mkdir()
        skimage_photos["coffee"].save(tmp_path / folder / "coffee.png")
    args = ["evaluate", "--sr", str(tmp_path / "sr"), "--gt", str(tmp_path / "gt"), "--metrics", "psnr"]
    assert main([*args, "--max_pixels", "1000", "--out", str(tmp_path / "out")]) == 2
    assert "coffee.png is 200x160 = 32000 pixels, over --max_pixels 1000." in capsys.readouterr().err
    write_bomb_png(tmp_path / "sr" / "coffee.png")
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "decompression bomb" in capsys.readouterr().err


def test_output_directory_problems_exit_3_with_one_line(tiny_rm1_dir, skimage_photos, tmp_path, capsys, monkeypatch):
    skimage_photos["coffee"].save(tmp_path / "coffee.png")
    common = ["score", "--images", str(tmp_path / "coffee.png"), "--model", str(tiny_rm1_dir), "--out"]
    (tmp_path / "a-file").write_text("x")
    assert main([*common, str(tmp_path / "a-file")]) == 3
    assert capsys.readouterr().err.strip() == f"error: --out {tmp_path / 'a-file'} exists and is not a directory."
    assert main(["init", "--tiny_clip", "--out", str(tmp_path / "a-file" / "rm")]) == 3
    assert "error:" in capsys.readouterr().err

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("finpercep_hf.visualization.save_pdm_overlay", disk_full)
    assert main([*common, str(tmp_path / "out")]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot write to --out {tmp_path / 'out'}: no space left on device."]


@pytest.mark.skipif(os.getuid() == 0, reason="root can write into a read-only directory")
def test_unwritable_output_directory_exits_3(tiny_rm1_dir, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["score", "--model", str(tiny_rm1_dir), "--out", str(locked / "out")]) == 3
    assert "cannot write to --out" in capsys.readouterr().err


def test_exit_codes_are_in_every_help():
    parser = build_parser()
    assert "Exit codes: 0 done; 1" in parser.format_help()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    for name, subparser in subparsers.choices.items():
        assert "3 the output directory cannot be written" in subparser.format_help(), name
    assert "Exit codes" in score.__doc__


def test_permission_denied_output_directory_exits_3(tiny_rm1_dir, tmp_path, capsys, monkeypatch):
    """The check that runs before any model loads (root ignores permissions, so the refusal is simulated)."""

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("finpercep_hf.commands.outputs.tempfile.TemporaryFile", denied)
    assert main(["score", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "out")]) == 3
    assert capsys.readouterr().err.strip() == f"error: cannot write to --out {tmp_path / 'out'}: Permission denied."
