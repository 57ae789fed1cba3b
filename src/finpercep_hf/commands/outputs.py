"""What the ``finpercep`` sub-commands share about their inputs and outputs: the pixel limit, the output
directory check, and output names that keep the inputs' relative paths."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from PIL import Image

from ..scripting import EXIT_OUTPUT_ERROR

# Largest image scored at full size: 2 MP (Full HD passes unchanged). Sized for a 2-core CPU with a few GiB free:
# the reward model's memory and time grow with the pixel count (a 6000x6000 PNG took > 4 min and 2.2 GB).
DEFAULT_MAX_PIXELS = 2_097_152
MAX_PIXELS_HELP = (
    "Largest image (width x height) processed at full size; a larger one is downscaled to fit (aspect kept) with a "
    "one-line note. Files whose header claims more than PIL's decompression-bomb limit "
    f"({Image.MAX_IMAGE_PIXELS} pixels) are refused like any unreadable file. 0 = no limit."
)


class FinPercepOutputError(OSError):
    """The output directory cannot be written; the message names it and says why."""


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check that a file can be written in it; `FinPercepOutputError` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FinPercepOutputError(f"--out {path} exists and is not a directory.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise FinPercepOutputError(f"cannot write to --out {path}: {error.strerror or error}.") from error
    return path


# errno values of a destination that cannot be written (a missing *input* file, ENOENT, is not one of them).
OUTPUT_ERRNOS = frozenset(
    (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)
)


@contextmanager
def output_errors_exit(out: str | os.PathLike | None) -> Iterator[None]:
    """Turn an `OSError` that says the destination cannot be written (no permission, disk full, read-only, a file
    in the way: `OUTPUT_ERRNOS`) into one line on stderr naming ``out``, and exit code 3."""
    try:
        yield
    except FinPercepOutputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_OUTPUT_ERROR) from None
    except OSError as error:
        if error.errno not in OUTPUT_ERRNOS:
            raise
        reason = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        print(f"error: cannot write to --out {out}: {reason}.", file=sys.stderr)
        raise SystemExit(EXIT_OUTPUT_ERROR) from None


def fit_to_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` downscaled (bicubic, aspect kept) to at most ``max_pixels`` pixels; unchanged when it fits or
    ``max_pixels`` is 0."""
    pixels = image.width * image.height
    if not max_pixels or pixels <= max_pixels:
        return image
    factor = (max_pixels / pixels) ** 0.5
    size = (max(1, int(image.width * factor)), max(1, int(image.height * factor)))
    return image.resize(size, Image.BICUBIC)


def relative_output_names(names: list[str]) -> dict[str, PurePosixPath]:
    """Unique output stems for input ``names`` (file paths or ``skimage:<photo>``): each path relative to the
    inputs' common folder, without its suffix (``a/x.png``, ``b/x.png`` -> ``a/x``, ``b/x``); the suffix is kept
    where two names would still collide (``x.png``, ``x.jpg`` -> ``x_png``, ``x_jpg``)."""
    paths = {name: Path(name.removeprefix("skimage:")).resolve() if not name.startswith("skimage:") else None
             for name in names}  # fmt: skip
    folders = [str(path.parent) for path in paths.values() if path is not None]
    root = Path(os.path.commonpath(folders)) if folders else None
    relative = {
        name: PurePosixPath(name.removeprefix("skimage:")) if path is None else PurePosixPath(path.relative_to(root))
        for name, path in paths.items()
    }
    stems = [path.with_suffix("") for path in relative.values()]
    return {
        name: path.with_suffix("")
        if stems.count(path.with_suffix("")) == 1
        else path.with_name(path.name.replace(".", "_"))
        for name, path in relative.items()
    }


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_HELP",
    "FinPercepOutputError",
    "check_output_dir",
    "fit_to_pixels",
    "output_errors_exit",
    "relative_output_names",
]
