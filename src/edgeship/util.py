"""Small shared helpers: atomic writes, a registry filled by decorator, the console."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, Callable, Generic, Iterator, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; on success it is fsynced and renamed over ``path``.

    >>> with atomic_path("out/model.gguf") as tmp:
    ...     llama_model_quantize(src, tmp)        # anything that writes a file by name
    >>> Path("out/model.gguf").is_file()
    True

    A crash or an exception leaves ``path`` as it was (the old file or none) and removes the
    temporary file: readers never see half a file. The temporary name holds the process id, so two
    processes writing the same path do not write into each other's file. ``durable=False`` skips the
    fsyncs: still never half a file for readers, but a power cut may lose the write (for files
    rewritten many times a second that no one needs after a crash, such as a simulated sysfs tree).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: nothing was written to the temporary file for {path}")
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """An open file that replaces ``path`` atomically when the block ends without an exception.

    >>> with atomic_file("ckpt.pt") as f:
    ...     torch.save(state, f)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    with atomic_path(path, durable) as tmp:
        f: IO[Any] = open(tmp, "w", encoding="utf-8") if mode == "w" else open(tmp, "wb")
        with f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort (not every platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str, durable: bool = True) -> Path:
    """Write a file atomically (temp file, fsync, rename) so a crash never leaves half a file."""
    with atomic_file(path, "w", durable) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def emit_json(path: str | None, data: Any, say: Callable[[str], Any] | None = None,
              writer: Callable[[str, Any], Any] | None = None) -> None:
    """What every verb's ``--json PATH`` does: write ``data`` to PATH atomically (``say`` is told where),
    print it on stdout for ``-``, nothing for None.

    >>> emit_json(args.json, report, say=console.print)
    """
    if path is None:
        return
    if path == "-":
        print(json.dumps(data, indent=2, default=str), flush=True)
        return
    (writer or write_json)(path, data)
    if say is not None:
        say(f"wrote {path}")


class Registry(Generic[K, V]):
    """Implementations keyed by an enum member (or a name), registered by decorator beside each one.

    >>> LAYOUTS: Registry[Layout, LayoutFn] = Registry("layout")
    >>> @LAYOUTS.register(Layout.ALL)
    ... def _all(graph): ...
    >>> LAYOUTS.get(Layout.ALL) is _all, Layout.ALL in LAYOUTS
    (True, True)
    >>> LAYOUTS.get(Layout.DYNAMIC)
    LookupError: no layout 'dynamic' is registered; known: all

    ``error`` is the exception ``get`` raises for an unknown key (an edgeship error where the key
    comes from the user). Registering a key again replaces the earlier entry.
    """

    def __init__(self, what: str, error: type[Exception] = LookupError):
        self.what = what
        self.error = error
        self._items: dict[K, V] = {}

    def register(self, key: K) -> Callable[[V], V]:
        def deco(value: V) -> V:
            self._items[key] = value
            return value

        return deco

    def get(self, key: K, *default: V) -> V:
        """The entry for ``key``; without one, ``default`` if given, else ``error`` naming the known keys."""
        if key in self._items:
            return self._items[key]
        if default:
            return default[0]
        raise self.error(f"no {self.what} {_name(key)!r} is registered; known: {', '.join(self.names()) or 'none'}")

    def names(self) -> list[str]:
        return [_name(k) for k in self._items]

    def keys(self) -> list[K]:
        return list(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)


def _name(key: Any) -> str:
    return str(getattr(key, "value", key))


def console(stderr: bool = False):
    """A rich Console; wide enough for tables when output goes to a file or a pipe (CI logs, make).

    Lines are soft-wrapped: a note, a log line or a path is printed whole and the terminal folds it,
    never cut into fragments at a fixed width (80 columns is rich's guess for a pipe). Tables still fit
    the width: the terminal's, ``$COLUMNS`` when set, else 160 for a file or a pipe.
    """
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160
    return Console(stderr=stderr, width=width, soft_wrap=True)


def trim_heap() -> bool:
    """Give the memory the C heap holds free back to the system (glibc's ``malloc_trim``); False elsewhere.

    After a burst of temporary allocations (a model's load, the optimizer's work), glibc keeps the freed
    pages for reuse; a server that will not need them again gives them back once.
    """
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def rss() -> int:
    """This process's resident set size in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


def json_depth(text: str | bytes, limit: int | None = None, block: int = 1 << 18) -> int:
    """How deeply arrays and objects nest in JSON ``text``, found without parsing it (no recursion).

    >>> json_depth('{"a": [[1], "[[[["]}')
    3

    Meant to run before ``json.loads``, which recurses once per level: a body of ten thousand '['
    ends in RecursionError. Brackets inside strings do not count (escaped quotes are honoured).
    With ``limit``, scanning stops as soon as the depth passes it (the result is then > limit).
    Linear time, in blocks of ``block`` bytes with numpy, so memory stays bounded: about 30 ms
    for a 10 MB array of arrays; text with fewer brackets than ``limit`` is not scanned at all.
    """
    import numpy as np

    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    opening = raw.count(b"[") + raw.count(b"{")
    if limit is not None and opening <= limit:
        return opening  # an upper bound, enough to say "within the limit" without scanning
    depth, in_string, backslashes, deepest = 0, 0, 0, 0
    for start in range(0, len(raw), block):
        a = np.frombuffer(raw, dtype=np.uint8, count=min(block, len(raw) - start), offset=start)
        step = (a == 0x5B).view(np.int8) + (a == 0x7B).view(np.int8) - (a == 0x5D).view(np.int8) \
            - (a == 0x7D).view(np.int8)
        quote = a == 0x22
        is_bs = a == 0x5C
        tail = 0
        if backslashes or is_bs.any():
            idx = np.arange(a.size, dtype=np.int32)
            # Index of the last non-backslash at or before each position (-1: none in this block).
            last_other = np.maximum.accumulate(np.where(is_bs, -1, idx))
            before = np.empty(a.size, dtype=np.int32)  # backslashes right before each position
            before[0] = backslashes
            before[1:] = idx[:-1] - last_other[:-1] + np.where(last_other[:-1] < 0, backslashes, 0)
            quote &= (before & 1) == 0  # an escaped quote does not end a string
            tail = a.size - 1 - int(last_other[-1]) + (backslashes if last_other[-1] < 0 else 0)
        if in_string or quote.any():
            inside = (np.cumsum(quote, dtype=np.int32) + in_string) & 1
            step[inside.astype(bool)] = 0
            in_string = int(inside[-1])
        running = np.cumsum(step, dtype=np.int32) + depth
        deepest = max(deepest, int(running.max()))
        if limit is not None and deepest > limit:
            return deepest
        depth, backslashes = int(running[-1]), tail
    return deepest
